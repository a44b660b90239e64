"""deflicker at inference: ``run PROCESSED guide=ORIGINAL`` and ``evaluate ... guide=ORIGINAL``.

An untrained residual temporal model whose mask is saturated (m = 1) is the identity on its
first three input channels: its output must be the processed input, frame for frame, with the
input's timestamps and audio, whatever path (frame-wise steps, segments) the frames take.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from media import audio_packets, frame_times, make_clip, moving_pattern, run_config, tiny_checkpoints
from test_metrics import jitter

from vid2vid_lite import run
from vid2vid_lite.checkpoint import load_generator, save_generator
from vid2vid_lite.datasets.synthetic import camera_pan
from vid2vid_lite.datasets.tasks import get_task
from vid2vid_lite.engine.translator import Translator
from vid2vid_lite.errors import UserError
from vid2vid_lite.evaluate import evaluate, write_report
from vid2vid_lite.io import open_sink, open_source, read_video, write_video
from vid2vid_lite.metrics import psnr
from vid2vid_lite.nn import build_generator

ROOT = Path(__file__).resolve().parents[1]
T, H, W = 12, 32, 48

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def deflicker_checkpoint(path: Path, mask_bias: float) -> Path:
    """A tiny untrained deflicker model: residual (starts as the identity on the processed
    frame); ``mask_bias`` 20 saturates the blend mask (m = 1: no copy of the warped past), 0
    makes it a long memory (m ~ 0.5: the hard case for segment seams)."""
    torch.manual_seed(0)
    model = build_generator({"name": "temporal", "in_channels": 6, "ngf": 4, "depth": 3, "residual": True,
                             "use_validity": False, "mask_bias": mask_bias})  # fmt: skip
    task = get_task("deflicker")
    return save_generator(path, model, {"generator": model.config, "task": task.spec, "task_spec": task.to_spec()})


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("weights")
    out = tiny_checkpoints(folder)  # restore: not a guided task
    out["identity"] = deflicker_checkpoint(folder / "identity.safetensors", mask_bias=20.0)
    out["memory"] = deflicker_checkpoint(folder / "memory.safetensors", mask_bias=0.0)
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """The original (the guide), its per-frame processed version (brightness flicker; variable
    frame rate and audio), and guides that do not fit."""
    root = tmp_path_factory.mktemp("clips")
    original = moving_pattern(T, H, W)
    pts = [0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 15]
    return {
        "processed": make_clip(root / "processed.mkv", jitter(original), codec="ffv1", pts=pts, audio="aac"),
        "original": make_clip(root / "original.mkv", original, codec="ffv1"),
        "original_frames": write_video(root / "original_frames", original),
        "short.mp4": make_clip(root / "short.mp4", original[:-2]),  # the container knows its count
        "short.mkv": make_clip(root / "short.mkv", original[:-2], codec="ffv1"),  # found while streaming
        "long.mkv": make_clip(root / "long.mkv", moving_pattern(T + 2, H, W), codec="ffv1"),
        "small.mkv": make_clip(root / "small.mkv", moving_pattern(T, H - 8, W), codec="ffv1"),
    }


def translate(**options) -> Path:
    """``run`` in this process (fp32: the identity must not meet bf16 rounding)."""
    options = {"device": "cpu", "precision": "fp32", "progress": "false", **options}
    return run.translate(run_config(*(f"{key}={value}" for key, value in options.items())))


def run_cli(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore", V2V_DEBUG="", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "vid2vid_lite.run", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip


def differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(int) - b.astype(int))


def test_identity_model_gives_the_processed_frames_with_their_timing_and_audio(clips, weights, tmp_path):
    out = tmp_path / "stable.mkv"
    result = run_cli(clips["processed"], f"guide={clips['original']}", f"weights={weights['identity']}",
                     f"output={out}", "crf=0", "device=cpu", "precision=fp32", "progress=false")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{T} frames" in result.stdout
    back = read_video(out)[0]
    processed, original = read_video(clips["processed"])[0], read_video(clips["original"])[0]
    assert back.shape == processed.shape
    # the processed frames as the writer stores them (x264 at crf 0 halves the chroma: several
    # levels on this pattern), not the guide's
    stored = read_video(write_video(tmp_path / "processed_again.mkv", processed, crf=0))[0]
    assert differences(back, stored).max() <= 1
    assert differences(back, original).mean() > 4
    assert frame_times(out) == pytest.approx(frame_times(clips["processed"]), abs=1e-9)
    assert audio_packets(out) == audio_packets(clips["processed"])


def test_frame_folder_guide_and_frame_folder_output(clips, weights, tmp_path):
    out = translate(input=clips["processed"], guide=clips["original_frames"], weights=weights["identity"],
                    output=tmp_path / "pngs")  # fmt: skip
    back, processed = read_video(out)[0], read_video(clips["processed"])[0]
    assert back.shape == processed.shape
    assert differences(back, processed).max() <= 1


def test_stability_above_one_holds_more_of_the_past_and_never_where_the_mask_is_one(clips, weights, tmp_path):
    """stability=3 cubes the blend mask: with a long memory (m ~ 0.5) the output's frame-to-frame
    brightness steps shrink; stability=1 is the model as trained; a saturated mask (m = 1) stays
    1, so the identity model still gives the processed frames."""
    def steps(frames: np.ndarray) -> float:
        return float(np.abs(np.diff(frames.reshape(len(frames), -1).mean(axis=1))).mean())

    common = dict(input=clips["processed"], guide=clips["original"], batch=1)
    out = {s: read_video(translate(**common, weights=weights["memory"], stability=s, output=tmp_path / f"m{s}"))[0]
           for s in (1, 3)}  # fmt: skip
    default = read_video(translate(**common, weights=weights["memory"], output=tmp_path / "default"))[0]
    assert differences(default, out[1]).max() == 0
    assert steps(out[3]) < 0.5 * steps(out[1]), (steps(out[3]), steps(out[1]))
    held = read_video(translate(**common, weights=weights["identity"], stability=3, output=tmp_path / "identity"))[0]
    assert differences(held, read_video(clips["processed"])[0]).max() <= 1


@pytest.mark.parametrize("guide", ["video", "frames"])
def test_segments_side_by_side_match_one_segment(clips, weights, tmp_path, guide):
    """batch=3: later segments open the guide at their own start (a video by its timestamps, a
    frame folder by index); after the warm-up their frames are those of the sequential run."""
    n = 48
    original = moving_pattern(n, H, W, seed=3)
    processed = make_clip(tmp_path / "p.mkv", jitter(original, seed=1), codec="ffv1")
    guide_path = make_clip(tmp_path / "g.mkv", original, codec="ffv1") if guide == "video" else write_video(tmp_path / "g", original)
    model, config = load_generator(weights["memory"])
    results = {}
    for batch in (1, 3):
        translator = Translator(model, get_task("deflicker"), torch.device("cpu"), batch=batch, warmup=8,
                                precision="fp32", workers=1)  # fmt: skip
        with open_source(processed) as source, open_source(guide_path) as guide_source, \
                open_sink(tmp_path / f"out{batch}", like=source.info) as sink:
            stats = translator.translate(source, sink, progress=False, guide=guide_source)
        assert stats.frames == n and stats.segments == batch
        results[batch] = read_video(tmp_path / f"out{batch}")[0]
    diff = differences(results[1], results[3]).reshape(n, -1).max(axis=1)
    assert diff[:16].max() <= 1  # the first segment is the sequential run
    assert diff.max() <= 2, diff


def test_flow_and_scene_cuts_come_from_the_guide(tmp_path, weights, monkeypatch):
    """The guide has a cut that the processed video lacks: one reset; and DIS only ever sees the
    guide's frames."""
    from vid2vid_lite.flow import DISFlow

    a, b = moving_pattern(6, H, W, seed=1), 255 - moving_pattern(6, H, W, seed=2)
    guide = make_clip(tmp_path / "g.mkv", np.concatenate([a, b]), codec="ffv1")
    processed = make_clip(tmp_path / "p.mkv", jitter(moving_pattern(12, H, W, seed=1)), codec="ffv1")
    seen = []
    pair = DISFlow.backward_with_validity
    monkeypatch.setattr(DISFlow, "backward_with_validity", lambda self, cur, prev, **k: seen.append(cur) or pair(self, cur, prev, **k))
    model, _ = load_generator(weights["memory"])
    translator = Translator(model, get_task("deflicker"), torch.device("cpu"), batch=1, precision="fp32", workers=1)
    with open_source(processed) as source, open_source(guide) as guide_source, open_sink(tmp_path / "o", like=source.info) as sink:
        stats = translator.translate(source, sink, progress=False, guide=guide_source)
    assert stats.frames == 12 and stats.cuts == 1
    guide_frames = read_video(guide)[0]
    assert len(seen) == 10  # no flow into the first frame or across the cut
    assert all(any(np.array_equal(s, g) for g in guide_frames) for s in seen)


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing_guide", "is a deflicker model: give guide=ORIGINAL"),
        ("not_guided", "guide= is only for guided tasks"),
        ("guide_not_found", "guide: input not found"),
        ("short_declared", "frame count mismatch: the input"),  # counts known before any frame
        # Matroska declares no count: the packets are counted before any frame is translated
        ("short_streamed", "has 12 frames but the guide"),
        ("long_streamed", "has 12 frames but the guide"),
        ("small", "size mismatch"),
        ("output_is_guide", "is the guide"),
    ],
)
def test_bad_guide_exits_2_with_one_line_and_no_output(clips, weights, tmp_path, case, message):
    out = tmp_path / "out.mkv"
    args = {
        "missing_guide": [f"weights={weights['identity']}"],
        "not_guided": [f"weights={weights['temporal']}", f"guide={clips['original']}"],
        "guide_not_found": [f"weights={weights['identity']}", f"guide={tmp_path / 'nope.mkv'}"],
        "short_declared": [f"weights={weights['identity']}", f"guide={clips['short.mp4']}"],
        "short_streamed": [f"weights={weights['identity']}", f"guide={clips['short.mkv']}", "batch=1"],
        "long_streamed": [f"weights={weights['identity']}", f"guide={clips['long.mkv']}", "batch=1"],
        "small": [f"weights={weights['identity']}", f"guide={clips['small.mkv']}"],
        "output_is_guide": [f"weights={weights['identity']}", f"guide={tmp_path / 'g.mkv'}"],
    }[case]
    if case == "output_is_guide":
        out = make_clip(tmp_path / "g.mkv", moving_pattern(T, H, W), codec="ffv1")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_cli(clips["processed"], f"output={out}", "device=cpu", "progress=false", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temporary left


def test_count_mismatch_found_after_the_sinks_opened_leaves_nothing(clips, weights, tmp_path):
    """The processed Matroska file declares no frame count: the mismatch shows when the guide
    ends (batch=1) or from both files' timestamps (batch=2), after the output was opened; it is
    deleted."""
    for batch in ("1", "2"):
        with pytest.raises(UserError, match="frame count mismatch"):
            translate(input=clips["processed"], guide=clips["short.mkv"], weights=weights["identity"],
                      output=tmp_path / "o.mkv", batch=batch, workers=1)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- evaluate


def test_evaluate_measures_stability_with_the_guides_flow(tmp_path):
    """A pan (exact motion): processed = per-frame random brightness, output = one constant
    brightness.  With the guide's flow, the output's warping error is far below the processed
    video's; PSNR stays against the processed frames."""
    pan = camera_pan("astronaut", num_frames=8, size=(96, 128), velocity=(2, 1), start=(120, 140))
    original = pan.frames
    processed = jitter(original, seed=4, amount=0.15)
    stable = np.clip(original * 0.9, 0, 255).astype(np.uint8)
    paths = {name: write_video(tmp_path / name, frames) for name, frames in
             (("original", original), ("processed", processed), ("stable", stable))}  # fmt: skip
    result = evaluate(paths["stable"], paths["processed"], input=paths["processed"], guide=paths["original"], vmaf=False)
    out, inp, guide = (result.summaries[name] for name in ("output", "input", "guide"))
    assert result.settings["motion_from"] == "guide"
    # output vs the processed input, both with the guide's flow
    assert out["ewarp"] < 0.1 * out["ewarp_ref"]
    assert inp["ewarp"] == out["ewarp_ref"]
    assert guide["ewarp"] < 1.5 * out["ewarp"] + 1e-6  # the original is as stable
    assert out["flicker"] < 0.1 * inp["flicker"]  # brightness changes: the guide's, not the processed video's
    expected = psnr(np.stack(stable), np.stack(processed)).mean().item()
    assert out["psnr"] == pytest.approx(expected, rel=1e-5)
    written = write_report(result, tmp_path / "report", plots=False)
    report = json.loads(written[0].read_text())
    assert set(report) >= {"output", "guide", "settings"} and report["settings"]["motion_from"] == "guide"

    without = evaluate(paths["stable"], paths["processed"], vmaf=False).settings
    assert without["motion_from"] == "reference"


def test_evaluate_guide_mismatch_is_a_clear_error(tmp_path):
    frames = moving_pattern(6, H, W)
    ref = write_video(tmp_path / "ref", frames)
    with pytest.raises(UserError, match="frame count mismatch: .*guide has 5"):
        evaluate(ref, ref, guide=write_video(tmp_path / "short", frames[:5]), vmaf=False)
    with pytest.raises(UserError, match="size mismatch: guide is"):
        evaluate(ref, ref, guide=write_video(tmp_path / "small", moving_pattern(6, H - 8, W)), vmaf=False)


def test_evaluate_cli_takes_guide(tmp_path):
    frames = moving_pattern(5, H, W)
    ref, guide = write_video(tmp_path / "ref", jitter(frames)), write_video(tmp_path / "orig", frames)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "V2V_DEBUG": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "vid2vid_lite.evaluate", f"output={guide}", f"reference={ref}",
                           f"guide={guide}", f"hydra.run.dir={tmp_path / 'run'}", "progress=false", "plots=false"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert report["settings"]["motion_from"] == "guide" and "guide" in report
    assert report["output"]["ewarp"] == report["guide"]["ewarp"]


def test_bundled_deflicker_model_removes_brightness_flicker_and_keeps_the_look(tmp_path):
    """The shipped ``weights=deflicker`` on a pan over a photo with per-frame random brightness
    (a process it never trained on as such: a plain gain): the warping error with the original's
    flow falls well below the processed video's, and the output stays close to the processed
    frames (their mean brightness, not the original's)."""
    pan = camera_pan("coffee", num_frames=12, size=(96, 128), velocity=(2, 1), start=(40, 60))
    original = pan.frames
    processed = jitter(np.clip(original * 0.85, 0, 255).astype(np.uint8), seed=7, amount=0.15)
    paths = {name: write_video(tmp_path / name, frames) for name, frames in
             (("original", original), ("processed", processed))}  # fmt: skip
    out = translate(input=paths["processed"], guide=paths["original"], weights="deflicker", output=tmp_path / "stable")
    result = evaluate(out, paths["processed"], guide=paths["original"], vmaf=False)
    summary = result.summaries["output"]
    assert summary["ewarp"] < 0.3 * summary["ewarp_ref"]  # 0.12 when written; the identity: 1.0
    assert summary["psnr"] > 25.0
    stabilised = read_video(out)[0].reshape(len(original), -1).mean(axis=1)
    assert abs(stabilised.mean() - processed.mean()) < 0.5 * abs(original.mean() - processed.mean())
