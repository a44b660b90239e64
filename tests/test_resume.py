"""Long jobs are made in parts that survive a crash: the same command continues where a killed
run stopped, with the frames an uninterrupted run gives; two runs never write one output."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from media import audio_packets, fails_at_call, frame_times, make_clip, make_media, moving_pattern, tiny_checkpoints

from vid2vid_lite.checkpoint import save_generator
from vid2vid_lite.datasets.tasks import get_task
from vid2vid_lite.engine.translator import Translator
from vid2vid_lite.io import open_sink, open_source, read_video
from vid2vid_lite.io.job import SUFFIX, JobFolder
from vid2vid_lite.nn import build_generator

PART = "part_seconds=0.4"  # 10 frames a part at 25 fps


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    found = tiny_checkpoints(folder)
    # A slower temporal model (wider), so that a run can be killed midway.
    torch.manual_seed(1)
    model = build_generator({"name": "temporal", "ngf": 32, "depth": 3, "residual": True})
    found["slow"] = save_generator(folder / "slow.safetensors", model, {"generator": model.config, "task": "restore"})
    return found


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """12 s of a moving pattern with sound: 300 frames, 30 parts."""
    return make_media(tmp_path_factory.mktemp("clip") / "clip.mp4", "libx264", "aac", "mp4",
                      moving_pattern(300, 96, 128))


def command(*args) -> list[str]:
    return [sys.executable, "-m", "vid2vid_lite.run", *map(str, args), "device=cpu", "progress=false"]


def run(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(command(*args), capture_output=True, text=True, env=env, timeout=300)


def kill_midway(args, job: Path, parts: int) -> None:
    """Start ``run`` and SIGKILL it once ``parts`` parts are complete in its job folder."""
    process = subprocess.Popen(command(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list(job.glob("part-*.json"))) < parts:
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()


def test_a_killed_run_continues_from_its_last_part_with_the_same_frames_and_sound(tmp_path, clip, weights):
    reference = tmp_path / "reference.mp4"
    assert run(clip, f"weights={weights['slow']}", f"output={reference}", PART).returncode == 0
    out = tmp_path / "out.mp4"
    args = [clip, f"weights={weights['slow']}", f"output={out}", PART]
    job = out.with_name(out.name + SUFFIX)
    kill_midway(args, job, parts=3)
    assert not out.exists() and len(list(job.glob("part-*.json"))) >= 3  # parts exist before the rerun

    again = run(*args)
    assert again.returncode == 0, again.stderr
    note = next(line for line in again.stderr.splitlines() if line.startswith("continuing"))
    kept = int(note.split(" part(s), ")[1].split(" frames")[0])
    assert kept > 0 and kept % 10 == 0  # restarted at a part boundary above frame 0
    assert f"and {kept} kept from the interrupted run" in again.stdout
    assert np.array_equal(read_video(out)[0], read_video(reference)[0])
    assert frame_times(out) == frame_times(reference)
    assert audio_packets(out) == audio_packets(reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "reference.mp4"]  # nothing stray


def test_a_leftover_job_of_other_weights_is_removed_with_a_note(tmp_path, clip, weights):
    out = tmp_path / "out.mp4"
    job = out.with_name(out.name + SUFFIX)
    kill_midway([clip, f"weights={weights['slow']}", f"output={out}", PART], job, parts=2)
    result = run(clip, f"weights={weights['framewise']}", f"output={out}", PART)
    assert result.returncode == 0, result.stderr
    assert f"removed the unfinished job for {out} (another input, guide, weights or options)" in result.stderr
    assert "continuing" not in result.stderr
    assert len(frame_times(out)) == 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_fresh_starts_over_and_a_second_run_on_the_same_output_is_refused(tmp_path, clip, weights):
    out = tmp_path / "out.mp4"
    job = out.with_name(out.name + SUFFIX)
    kill_midway([clip, f"weights={weights['slow']}", f"output={out}", PART], job, parts=1)
    result = run(clip, f"weights={weights['slow']}", f"output={out}", PART, "fresh=true", "batch=1")
    assert result.returncode == 0, result.stderr
    assert "(fresh=true)" in result.stderr and "kept from" not in result.stdout

    holder = JobFolder(out)  # another run holds the output
    holder.start({"someone": "else"})
    try:
        refused = run(clip, f"weights={weights['framewise']}", f"output={out}")
    finally:
        holder.close(keep_parts=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip() == (
        f"error: another run (process {os.getpid()}) is writing {out}; wait for it to end or choose another output="
    )


@pytest.mark.parametrize("name,batch,crash_at", [("framewise", 4, 5), ("temporal", 1, 30), ("temporal", 3, 12)])
def test_parts_kept_after_a_crash_give_the_frames_of_an_uninterrupted_run(tmp_path, name, batch, crash_at):
    clip = make_clip(tmp_path / "c.mkv", moving_pattern(47, 40, 56), codec="ffv1")
    torch.manual_seed(0)
    model = build_generator({"name": name, "ngf": 8, "depth": 3, "residual": True})

    def translate(model, out: Path) -> tuple[np.ndarray, object]:
        job = JobFolder(out)
        job.start({"test": name})
        translator = Translator(model, get_task("restore"), torch.device("cpu"), batch=batch, warmup=3,
                                precision="fp32", workers=1)
        try:
            with open_source(clip) as source, open_sink(out, like=source.info, crf=0, preset="ultrafast",
                                                         temporary=job.work_path("output.mkv")) as sink:
                stats = translator.translate(source, sink, progress=False, job=job, part_seconds=0.4)
        except RuntimeError:
            job.close(keep_parts=True)
            raise
        job.close(keep_parts=False)
        return read_video(out)[0], stats

    whole, _ = translate(model, tmp_path / "whole.mkv")
    with pytest.raises(RuntimeError, match="crash"):
        translate(fails_at_call(model, crash_at), tmp_path / "cut.mkv")
    kept = JobFolder(tmp_path / "cut.mkv").done()
    assert kept and 0 in kept
    continued, stats = translate(model, tmp_path / "cut.mkv")
    assert stats.kept_frames == sum(kept.values()) > 0 and stats.frames == 47 - stats.kept_frames
    assert np.array_equal(continued, whole)
