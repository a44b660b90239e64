"""Classical filter baselines through FFmpeg's filter graph: real filters on real frames."""

import numpy as np
import pytest
from media import frame_times, make_clip, moving_pattern

from vid2vid_lite.classical import filter_frames, filter_video
from vid2vid_lite.errors import UserError
from vid2vid_lite.io import read_video
from vid2vid_lite.metrics import psnr as psnr_per_frame


def psnr(frames: np.ndarray, reference: np.ndarray) -> float:
    """Mean per-frame PSNR (the project's metric) of ``(T, H, W, 3)`` uint8 frames."""
    return float(psnr_per_frame(frames, reference).mean())


def noisy(clean: np.ndarray, sigma: float = 12.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 255).astype(np.uint8)


def test_a_denoiser_brings_noisy_frames_closer_to_the_clean_ones():
    clean = moving_pattern(12, 48, 64)
    degraded = noisy(clean.astype(float))
    indices, images = zip(*filter_frames(iter(degraded), "nlmeans=s=8:p=7:r=9"))
    assert list(indices) == list(range(12))
    before = psnr(degraded, clean)
    after = psnr(np.stack(images), clean)
    assert after > before + 2, (before, after)


def test_a_temporal_filter_gives_every_frame_once_flushed_at_the_end():
    frames = moving_pattern(9, 32, 48)
    indices, _ = zip(*filter_frames(iter(frames), "atadenoise,fftdnoiz=sigma=4:prev=1:next=1"))
    assert list(indices) == list(range(9))


def test_filters_chain_in_order_and_identity_changes_nothing():
    frames = moving_pattern(5, 32, 48)
    _, images = zip(*filter_frames(iter(frames), "null,null"))
    assert np.array_equal(np.stack(images), frames)
    _, flipped = zip(*filter_frames(iter(frames), "hflip,hflip,vflip"))
    assert np.array_equal(np.stack(flipped), frames[:, ::-1])


def test_filter_video_keeps_timestamps_and_count(tmp_path):
    pts = [0, 1, 3, 4, 6, 7, 9]
    clip = make_clip(tmp_path / "c.mp4", moving_pattern(len(pts), 48, 64), pts=pts, audio="aac")
    out = filter_video(clip, tmp_path / "f.mp4", "atadenoise")
    frames, _ = read_video(out)
    assert len(frames) == len(pts)
    assert frame_times(out) == pytest.approx(frame_times(clip), abs=1e-3)


def test_an_unknown_filter_is_one_clear_error():
    with pytest.raises(UserError, match="cannot be set up"):
        list(filter_frames(iter(moving_pattern(2, 16, 16)), "no_such_filter=1"))
