"""Checkpoints: the task travels whole into `run`; checkpoints that name only their task still load;
every broken, foreign or hostile checkpoint is a one-line error, and none runs code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from checkpoint_cases import SYSTEM, USE_OURS, bad_checkpoints, save_payload, unpickle_plainly
from media import make_clip, moving_pattern, run_config, tiny_checkpoints, train_config

from vid2vid_lite import run
from vid2vid_lite.checkpoint import _pickle_globals, checkpoint_task, load_generator, load_state, save_generator
from vid2vid_lite.errors import UserError
from vid2vid_lite.datasets.degradations import Encoding, RestoreDegradation
from vid2vid_lite.datasets.tasks import Task, get_task
from vid2vid_lite.engine.config import build_task
from vid2vid_lite.nn import build_generator



def tiny_generator(in_channels: int = 1):
    torch.manual_seed(0)
    return build_generator({"name": "framewise", "in_channels": in_channels, "ngf": 8, "depth": 3})


def train_task(*overrides: str) -> Task:
    """The task ``python -m vid2vid_lite.train`` builds from these overrides."""
    return build_task(train_config("data.train=unused", *overrides).data)


def save(path: Path, model, task: Task | None = None, name: str | None = None) -> Path:
    """A checkpoint as training writes it (``task``), or as older versions did (``name`` only)."""
    config = {"generator": model.config}
    if task is not None:
        config.update(task=task.spec, task_spec=task.to_spec())
    if name is not None:
        config["task"] = name
    return save_generator(path, model, config)


def test_edges_thresholds_survive_save_load_and_reach_runs_task(tmp_path, monkeypatch):
    task = train_task("data.task=edges", "data.edges.thresholds=[20,60]")
    assert task.edge_thresholds == (20, 60)
    path = save(tmp_path / "edges.safetensors", tiny_generator(), task)
    _, config = load_generator(path)
    assert checkpoint_task(config) == task

    # run builds its translator with exactly that task
    seen = {}

    class Stop(Exception):
        pass

    def fake_translator(model, task, device, **kwargs):
        seen["task"] = task
        raise Stop

    monkeypatch.setattr(run, "Translator", fake_translator)
    cfg = run_config(f"input={tmp_path / 'in.mp4'}", f"weights={path}", "device=cpu")
    with pytest.raises(Stop):
        run.translate(cfg)
    assert seen["task"] == task and seen["task"].edge_thresholds == (20, 60)
    frame = moving_pattern(1, 32, 48)[0]
    assert np.array_equal(seen["task"].model_input(frame), get_task("edges", edge_thresholds=(20, 60)).model_input(frame))
    assert not np.array_equal(seen["task"].model_input(frame), get_task("edges").model_input(frame))


@pytest.mark.parametrize(
    "overrides",
    [
        ["data.task=paired", "data.label_nc=5"],
        ["data.task=restore", "data.restore.clean=0.5", "data.restore.noise=[0.01,0.02]"],
        ["data.task=colorize"],
        ["data.task=upscale2x"],
        ["data.task=deflicker", "data.deflicker.processes=[gamma,restore_model]", "data.deflicker.max_processes=1"],
    ],
)
def test_every_task_spec_round_trips(overrides):
    task = train_task(*overrides)
    assert Task.from_spec(task.to_spec()) == task


def test_the_restore_degradation_is_kept_whole():
    degradation = RestoreDegradation(
        (Encoding("libx265", (20, 40), ("veryfast", "medium")), Encoding("mpeg4", (3, 20), ())), (0.0, 0.01), 0.15,
    )
    task = get_task("restore", degradation=degradation)
    assert Task.from_spec(task.to_spec()).degradation == degradation


def test_a_checkpoint_that_names_only_its_task_loads_with_default_options(tmp_path):
    path = save(tmp_path / "old.safetensors", tiny_generator(), name="edges")
    model, config = load_generator(path)
    assert checkpoint_task(config) == get_task("edges") and checkpoint_task(config).edge_thresholds == (100, 200)
    labels = save(tmp_path / "labels.safetensors", tiny_generator(4), name="labels:4")
    assert checkpoint_task(load_generator(labels)[1]) == get_task("labels:4")
    nameless = save(tmp_path / "nameless.safetensors", tiny_generator(3))
    assert checkpoint_task(load_generator(nameless)[1]) == get_task("restore")


# --------------------------------------------------------------------------- broken checkpoints


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return tiny_checkpoints(tmp_path_factory.mktemp("weights"))["framewise"]


@pytest.fixture(scope="module")
def cases(tmp_path_factory, good) -> dict[str, tuple[Path, str]]:
    return bad_checkpoints(tmp_path_factory.mktemp("bad"), good)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", moving_pattern(2, 16, 24))


def cli(clip: Path, weights: Path, out: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "vid2vid_lite.run", str(clip), f"weights={weights}", f"output={out}",
               "device=cpu", "progress=false"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "V2V_DEBUG": ""})


def assert_one_line_error(result: subprocess.CompletedProcess, out: Path, *words: str) -> str:
    """Exit status 2, a single ``error: `` line naming ``words``, no traceback, nothing written."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and "weights_only" not in result.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert not any(out.parent.glob(f"*{out.stem}*")), "no output (nor a temporary one) for a failed load"
    return lines[0]


def load_error(weights: Path) -> str:
    """The message ``load_generator`` refuses ``weights`` with: one line, never advising weights_only=False."""
    with pytest.raises(UserError) as info:
        load_generator(weights)
    message = str(info.value)
    assert "\n" not in message and "weights_only" not in message, message
    return message


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_pt_that_carries_code_is_refused_naming_it_and_never_runs(tmp_path, clip, legacy):
    marker = tmp_path / "ran.marker"
    pt = save_payload(tmp_path / "ckpt.pt", marker, legacy=legacy)
    unpickle_plainly(pt)  # positive control: these bytes do run code when unpickled plainly
    assert marker.exists()
    marker.unlink()

    out = tmp_path / "out.mp4"
    line = assert_one_line_error(cli(clip, pt, out), out, f"{pt} holds code", f"tries to load {SYSTEM}", USE_OURS)
    assert "must never run code" in line and ".safetensors" in line
    assert not marker.exists()
    for load in (load_generator, load_state):  # train.resume reads .pt training states the same way
        with pytest.raises(UserError, match=f"holds code.*{SYSTEM}"):
            load(pt)
    assert not marker.exists()


@pytest.mark.parametrize("legacy,protocol", [(False, 2), (True, 2), (False, 4)])
def test_the_code_a_pt_would_run_is_found_without_unpickling(tmp_path, legacy, protocol):
    """The fallback when PyTorch's message names no global: pickletools reads the opcodes
    (GLOBAL, or STACK_GLOBAL from protocol 4), in data.pkl or a legacy file, running nothing."""
    marker = tmp_path / "ran.marker"
    pt = save_payload(tmp_path / "ckpt.pt", marker, legacy=legacy, protocol=protocol)
    assert _pickle_globals(pt) == [SYSTEM]
    torch.save({"generator": {"w": torch.zeros(2)}, "config": {}}, tmp_path / "tensors.pt",
               _use_new_zipfile_serialization=not legacy, pickle_protocol=protocol)
    assert _pickle_globals(tmp_path / "tensors.pt") == []  # torch's own tensor globals are allowed
    assert not marker.exists()


CASES = [
    "flipped_header.safetensors", "huge_header.safetensors", "beyond_the_end.safetensors", "cut_short.safetensors",
    "missing_key.safetensors", "extra_key.safetensors", "wrong_shape.safetensors", "wrong_dtype.safetensors",
    "foreign.safetensors", "broken_json.safetensors", "no_config.safetensors", "unknown_generator.safetensors",
    "unknown_option.safetensors", "bad_option.safetensors", "unknown_task.safetensors", "scale_mismatch.safetensors",
    "state_dict.pt", "other_keys.pt", "not_tensors.pt", "cut_short.pt",
    "empty.safetensors", "empty.pt", "empty.ckpt", "empty.bin", "empty",
    "notes.pt", "picture.pt", "model.ckpt", "run_without_checkpoints", "damaged_run",
]


@pytest.mark.parametrize("case", CASES)
def test_a_broken_or_foreign_checkpoint_is_one_line_saying_what_is_wrong(cases, case):
    path, expect = cases[case]
    message = load_error(path)
    assert expect in message and str(path) in message, message
    assert ";" in message or " give " in message  # and what to do


def test_every_case_is_tested(cases):
    assert sorted(cases) == sorted(CASES)


def test_a_pt_with_generator_and_config_loads_in_full_or_half_precision(good, tmp_path):
    model, config = load_generator(good)
    tensors = model.state_dict()
    for name, values in [("full", tensors), ("half", {k: v.half() for k, v in tensors.items()})]:
        torch.save({"generator": values, "config": config}, tmp_path / f"{name}.pt")
        loaded, back = load_generator(tmp_path / f"{name}.pt")
        assert back == config and not loaded.training


@pytest.mark.parametrize("case", ["huge_header.safetensors", "wrong_shape.safetensors", "empty.bin", "picture.pt",
                                  "damaged_run"])
def test_the_cli_reports_a_bad_checkpoint_in_one_line(tmp_path, clip, cases, case):
    path, expect = cases[case]
    out = tmp_path / "out.mp4"
    assert_one_line_error(cli(clip, path, out), out, expect)


def test_a_bad_training_state_is_one_line(cases, good):
    """``train.resume`` reads ``.pt`` training states: the same refusals (code: see above)."""
    for path, expect in [(cases["empty.pt"][0], "is empty"), (cases["notes.pt"][0], "neither"),
                         (cases["state_dict.pt"][0], "not a vid2vid_lite training state"),
                         (good, "is a safetensors file, not a training state")]:
        with pytest.raises(UserError) as info:
            load_state(path)
        message = str(info.value)
        assert expect in message and str(path) in message and "latest.pt" in message and "\n" not in message
