"""Checkpoints: the task travels whole into `run`; checkpoints that name only their task still load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from media import moving_pattern, run_config, train_config

from vid2vid_lite import run
from vid2vid_lite.checkpoint import checkpoint_task, load_generator, save_generator
from vid2vid_lite.datasets.tasks import Encoding, RestoreDegradation, Task, get_task
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
