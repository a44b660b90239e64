"""`python -m vid2vid_lite.run` end to end: real files in, real files out, clean errors."""

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from media import audio_packets, frame_times, make_audio_only, make_clip, moving_pattern, tiny_checkpoints

from vid2vid_lite.io import read_video


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory.mktemp("weights"))


def run(*args, cwd=None):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "vid2vid_lite.run", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=300,
    )


@pytest.mark.parametrize("kind", ["framewise", "temporal"])
def test_video_in_video_out_keeps_frames_timing_size_audio(tmp_path, weights, kind):
    frames = moving_pattern(10, 36, 52)
    pts = [0, 1, 2, 3, 5, 6, 8, 9, 10, 12]  # variable frame rate
    clip = make_clip(tmp_path / "in clip.mp4", frames, fps=25, pts=pts, audio="aac")
    result = run(clip, f"weights={weights[kind]}", "device=cpu", "progress=false")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "in clip_v2v.mp4"
    assert str(out) in result.stdout and "10 frames" in result.stdout
    back, info = read_video(out)
    assert back.shape == frames.shape
    assert frame_times(out) == pytest.approx(frame_times(clip), abs=1e-9)
    assert audio_packets(out) == audio_packets(clip)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in clip.mp4", "in clip_v2v.mp4"]


def test_frame_folder_in_and_out_and_awkward_path(tmp_path, weights):
    folder = tmp_path / "frames, with = and 'quotes'"
    from vid2vid_lite.io import write_video

    write_video(folder, moving_pattern(5, 20, 30))
    result = run(folder, f"weights={weights['framewise']}", "device=cpu", "batch=2")
    assert result.returncode == 0, result.stderr
    out = tmp_path / f"{folder.name}_v2v"
    assert sorted(p.name for p in out.iterdir()) == [f"{i:06d}.png" for i in range(5)]
    # a folder to a video with the suffix
    result = run(f"input={folder}".replace(str(folder), "'" + str(folder).replace("'", "\\'") + "'"),
                 f"output={tmp_path / 'out.mkv'}", f"weights={weights['framewise']}", "fps=10")
    assert result.returncode == 0, result.stderr
    assert frame_times(tmp_path / "out.mkv") == pytest.approx([i / 10 for i in range(5)], abs=1e-3)


def test_video_to_frame_folder_output(tmp_path, weights):
    clip = make_clip(tmp_path / "c.mp4", moving_pattern(4, 20, 30))
    result = run(clip, f"output={tmp_path / 'pngs'}", f"weights={weights['temporal']}")
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "pngs").glob("*.png"))) == 4


def test_multirun_sweep_writes_one_output_per_job(tmp_path, weights):
    clip = make_clip(tmp_path / "c.mp4", moving_pattern(4, 20, 30))
    sweep = tmp_path / "sweep"
    result = run("-m", clip, "crf=17,30", f"weights={weights['framewise']}", f"hydra.sweep.dir={sweep}", "progress=false")
    assert result.returncode == 0, result.stderr
    outs = sorted(sweep.glob("*/c_v2v.mp4"))
    assert len(outs) == 2
    assert outs[0].stat().st_size > outs[1].stat().st_size  # crf 17 keeps more than crf 30
    assert not (tmp_path / "c_v2v.mp4").exists()


def damaged_midway(clip: Path, target: Path) -> tuple[Path, int]:
    """A copy of ``clip`` with garbage in its middle where FFmpeg reports an error after some
    frames (checked with plain PyAV): ``(path, frames decoded before the error)``."""
    data = clip.read_bytes()
    rng = np.random.default_rng(0)
    for _ in range(50):
        damaged = bytearray(data)
        at = int(rng.integers(len(data) // 3, 2 * len(data) // 3))
        damaged[at : at + 40] = rng.integers(0, 256, 40, dtype=np.uint8).tobytes()
        target.write_bytes(damaged)
        decoded = 0
        try:
            with av.open(str(target)) as container:
                for _ in container.decode(video=0):
                    decoded += 1
        except av.FFmpegError:
            if decoded:
                return target, decoded
    raise AssertionError("no damaged copy found")


def test_damaged_input_keep_writes_readable_part(tmp_path, weights):
    clip = make_clip(tmp_path / "full.mkv", moving_pattern(60, 32, 48))
    damaged, decoded = damaged_midway(clip, tmp_path / "damaged.mkv")
    failed = run(damaged, f"weights={weights['framewise']}", f"output={tmp_path / 'a.mp4'}")
    assert failed.returncode == 2 and "is damaged after frame" in failed.stderr and "Traceback" not in failed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.mkv", "full.mkv"]  # nothing left
    kept = run(damaged, f"weights={weights['framewise']}", f"output={tmp_path / 'b.mp4'}", "on_error=keep")
    assert kept.returncode == 0, kept.stderr
    assert "is damaged after frame" in kept.stderr and f"kept the {decoded} frames" in kept.stderr
    assert len(frame_times(tmp_path / "b.mp4")) == decoded


def test_a_file_cut_short_is_translated_in_full_with_a_warning(tmp_path, weights):
    """A download cut short (no error, only fewer frames than the header says): every frame
    FFmpeg decodes is translated, exit 0, one warning line."""
    clip = make_clip(tmp_path / "full.mkv", moving_pattern(60, 32, 48))
    data = clip.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    with av.open(str(cut)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert 0 < decoded < 60
    result = run(cut, f"weights={weights['temporal']}", f"output={tmp_path / 'o.mp4'}", "batch=2")
    assert result.returncode == 0, result.stderr
    assert len(frame_times(tmp_path / "o.mp4")) == decoded
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "the header promised" in warnings[0]


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing", "input not found"),
        ("empty_dir", "holds no images"),
        ("not_media", "cannot be read as video"),
        ("audio_only", "has no video stream"),
        ("truncated_mp4", "damaged or truncated"),
        ("unwritable", "cannot create output folder"),
        ("same_as_input", "is the input"),
        ("unknown_weights", "unknown weights 'nonesuch'"),
        ("bad_workers", "workers=0 is not a positive whole number"),
        ("bad_flag", "flow_check=maybe is not true or false"),
        ("bad_precision", "precision=fp64 is not known"),
        ("bad_stability", "stability=0 is not a positive number"),
        ("stability_framewise", "stability= is for temporal models"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_output(tmp_path, weights, case, message):
    clip = make_clip(tmp_path / "ok.mp4", moving_pattern(4, 20, 30))
    original = clip.read_bytes()
    args = {
        "missing": [tmp_path / "nope.mp4"],
        "empty_dir": [(tmp_path / "empty").mkdir() or tmp_path / "empty"],
        "not_media": [(tmp_path / "t.mp4").write_text("hello" * 100) and tmp_path / "t.mp4"],
        "audio_only": [make_audio_only(tmp_path / "a.m4a")],
        "truncated_mp4": [(tmp_path / "tr.mp4").write_bytes(clip.read_bytes()[: clip.stat().st_size // 2]) and tmp_path / "tr.mp4"],
        "unwritable": [clip, f"output={clip}/sub/out.mp4"],
        "same_as_input": [clip, f"output={clip}"],
        "unknown_weights": [clip, "weights=nonesuch"],
        "bad_workers": [clip, "workers=0"],
        "bad_flag": [clip, "flow_check=maybe"],
        "bad_precision": [clip, "precision=fp64"],
        "bad_stability": [clip, "stability=0"],
        "stability_framewise": [clip, "stability=2"],
    }[case]
    if case != "unknown_weights":
        args.append(f"weights={weights['framewise']}")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert clip.read_bytes() == original  # the input is never touched, byte for byte


def test_debug_shows_traceback(tmp_path):
    env = dict(os.environ, V2V_DEBUG="1")
    result = subprocess.run([sys.executable, "-m", "vid2vid_lite.run", str(tmp_path / "nope.mp4")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_demo_runs_with_no_input(tmp_path):
    """The README's second command: no input -> the demo on the bundled sample clip."""
    result = run("progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    demo = tmp_path / "v2v_demo"
    for name in ("side_by_side.mp4", "report/metrics.json", "half_size/000000.png", "original/000131.png"):
        assert (demo / name).is_file(), name
    half, _ = read_video(demo / "half_size")
    assert half.shape == (132, 135, 240, 3)
    for kind in ("lanczos", "framewise", "temporal"):  # each upscaler back at the original's size
        frames, _ = read_video(demo / kind)
        assert frames.shape == (132, 270, 480, 3), kind
    side, _ = read_video(demo / "side_by_side.mp4")
    assert side.shape == (132, 270, 4 * 480, 3)  # Lanczos | frame-wise | temporal | original
    table = result.stdout.split("demo: frames")[0]
    assert "temporal" in table and "frame-wise" in table and "Lanczos" in table and "psnr" in table
    assert "demo: report" in result.stdout
