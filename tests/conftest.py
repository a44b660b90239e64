import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from media import make_clip, moving_pattern  # noqa: E402


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: one thread is faster, and far faster when other jobs load the 2 cores
    (OpenMP workers spin while they wait).  Use with ``pytestmark = usefixtures(...)``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def pattern():
    """24 frames, 48x64, moving 2 px a frame."""
    return moving_pattern(24, 48, 64)


@pytest.fixture
def cfr_clip(tmp_path, pattern):
    """A 25 fps H.264 MP4 with an AAC track."""
    return make_clip(tmp_path / "cfr.mp4", pattern, fps=25, audio="aac")
