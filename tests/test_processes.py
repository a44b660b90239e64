"""deflicker's per-frame processes and training pairs (vid2vid_lite.datasets.processes)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from vid2vid_lite.datasets.processes import (
    Flicker,
    HELDOUT_PROCESSES,
    TRAIN_PROCESSES,
    equalize,
    flicker_pair,
    frame_params,
    gray_world,
    jpeg,
    luma_cdf,
    run_process,
    white_balance,
)
from vid2vid_lite.datasets.synthetic import camera_pan
from vid2vid_lite.errors import UserError


@pytest.fixture(scope="module")
def pan():
    return camera_pan("astronaut", 6, (64, 80), velocity=(2.0, 1.0)).frames


def test_training_and_heldout_processes_are_disjoint_and_keep_shape(pan):
    assert not set(TRAIN_PROCESSES) & set(HELDOUT_PROCESSES)
    rng = np.random.default_rng(0)
    for process in (*TRAIN_PROCESSES.values(), *HELDOUT_PROCESSES.values()):
        p = process.measure(pan[0]) if process.measure else rng.uniform(-1, 1, process.dims)
        out = process.apply(pan[0], p)
        assert out.shape == pan[0].shape and out.dtype == np.uint8, process.name


def test_tone_and_gamma_at_zero_are_the_identity_and_move_away_from_it(pan):
    for name in ("tone", "gamma"):
        process = TRAIN_PROCESSES[name]
        assert np.abs(process.apply(pan[0], np.zeros(process.dims)).astype(int) - pan[0]).max() <= 1
    brighter_tone = TRAIN_PROCESSES["tone"].apply(pan[0], np.array([1.0, 0.0, 0.0, 0.0]))  # +0.2 brightness
    brighter_gamma = TRAIN_PROCESSES["gamma"].apply(pan[0], np.full(3, -1.0))  # gamma 2^-0.5 < 1
    assert brighter_tone.mean() > pan[0].mean() + 30 and brighter_gamma.mean() > pan[0].mean() + 10


def test_gray_world_balances_the_channel_means():
    frame = np.random.default_rng(1).integers(0, 200, (32, 32, 3)).astype(np.uint8)
    frame[..., 0] //= 2  # a blue-green cast
    means = white_balance(frame, gray_world(frame)).reshape(-1, 3).mean(axis=0)
    assert means.max() - means.min() < 0.02 * means.mean()


def test_equalisation_by_its_own_cdf_flattens_the_luma_histogram(pan):
    dark = (pan[0] // 3).astype(np.uint8)
    y = equalize(dark, luma_cdf(dark)).mean(axis=-1)
    assert np.percentile(y, 90) - np.percentile(y, 10) > 2 * (np.percentile(dark.mean(-1), 90) - np.percentile(dark.mean(-1), 10))


def test_flicker_pair_jitters_frames_and_its_target_uses_the_mean_parameters(pan):
    still = np.repeat(pan[:1], 5, axis=0)  # a still video: any frame-to-frame change is flicker
    processed, stable = flicker_pair(still, np.random.default_rng(4), Flicker(strength=(0.4, 0.4), constant=0.0))
    assert processed.shape == stable.shape == still.shape
    assert all(np.array_equal(stable[0], s) for s in stable)  # one parameter vector for the clip
    assert np.abs(np.diff(processed.astype(int), axis=0)).mean() > 1.0  # the input flickers
    again = flicker_pair(still, np.random.default_rng(4), Flicker(strength=(0.4, 0.4), constant=0.0))
    assert np.array_equal(again[0], processed) and np.array_equal(again[1], stable)  # seeded


def test_a_constant_process_makes_input_equal_to_target(pan):
    processed, stable = flicker_pair(pan, np.random.default_rng(0), Flicker(constant=1.0))
    assert np.array_equal(processed, stable) and not np.array_equal(processed, pan)


def test_run_process_stable_version_is_the_mean_parameters(pan):
    process = TRAIN_PROCESSES["gamma"]
    params = frame_params(process, pan, np.random.default_rng(2), strength=0.3)
    assert params.shape == (len(pan), 3) and np.abs(params).max() <= 1
    processed, stable = run_process(process, pan, params)
    mean = params.mean(axis=0)
    assert np.array_equal(stable[3], process.apply(pan[3], mean))
    assert np.array_equal(processed[3], process.apply(pan[3], params[3]))
    measured = frame_params(HELDOUT_PROCESSES["white balance"], pan, np.random.default_rng(0), 0.0)
    assert np.allclose(measured[2], gray_world(pan[2]))  # adaptive: the frame gives its parameters


def test_restore_model_process_runs_the_bundled_network_on_a_frame_of_per_frame_quality(pan):
    import cv2

    process = TRAIN_PROCESSES["restore_model"]
    sharpness = [cv2.Laplacian(cv2.cvtColor(process.apply(pan[0], np.array([s, 1.0])), cv2.COLOR_RGB2GRAY),
                               cv2.CV_64F).var() for s in (-1.0, 0.0, 1.0)]
    assert sharpness[0] > sharpness[1] > sharpness[2]  # downscaled 1x, 2x, 3x before the network
    # The network's own output, not just the degraded frame (at 1x the frame only went through JPEG).
    change = process.apply(pan[0], np.array([-1.0, 1.0])).astype(int) - jpeg(pan[0], np.array([1.0]))
    assert np.abs(change).mean() > 0.2


def test_flicker_pair_draws_only_the_chosen_processes(pan):
    settings = Flicker(strength=(0.4, 0.4), constant=0.0, max_processes=1, processes=("gamma",))
    processed, stable = flicker_pair(pan, np.random.default_rng(3), settings)
    # gamma alone: one look-up table per channel maps the clip's pixels to the stable version's.
    for c in range(3):
        pairs = set(zip(pan[..., c].ravel().tolist(), stable[..., c].ravel().tolist()))
        assert len(pairs) == len({a for a, _ in pairs})
    assert not np.array_equal(processed, stable)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"processes": ("gamma", "vignette")}, "unknown or none (vignette)"),
     ({"processes": ()}, "unknown or none (empty)"),
     ({"processes": ("gamma", "gamma"), "max_processes": 2}, "max_processes=2: use 1..1")],
)
def test_flicker_settings_are_checked_with_one_line_errors(options, message):
    with pytest.raises(UserError, match=re.escape(message)):
        Flicker(**options)
