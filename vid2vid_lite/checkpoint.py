"""Checkpoints, in both formats, and how ``weights=`` and ``train.resume=`` find them.
Loading one can never run code.

- **Generator checkpoint** (``.safetensors``, what ``run`` loads): the weights plus the JSON
  config that rebuilds them: ``generator`` (the :func:`vid2vid_lite.nn.build_generator`
  config), ``task`` (the task's name), ``task_spec`` (the whole task, :meth:`Task.to_spec`:
  Canny thresholds, label classes, degradation) and free-form ``meta``.
- **Training state** (``.pt``, :data:`STATE_FORMAT`, for ``train.resume``): models,
  optimisers, schedulers, loss scalers, EMA, RNG state and step, written by ``torch.save`` and
  read with ``torch.load(weights_only=True)``.  It holds the same ``config`` and ``generator``
  entries, so ``run`` takes either.

A training run's ``checkpoints/`` holds ``latest.safetensors`` and ``latest.pt``
(:func:`save_training`), and ``step_NNNNNN.pt`` every ``train.keep_every`` steps.  Every file
is written under a temporary name and renamed, so a crash never leaves a broken one.

``weights=`` accepts a bundled name (``vid2vid_lite/weights/NAME.safetensors``), a checkpoint
file, or a training run directory (its ``checkpoints/latest.safetensors``).
"""

from __future__ import annotations

import json
import logging
import os
import random
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .datasets.tasks import Task
from .errors import UserError
from .io.base import atomic_path
from .nn import build_generator

log = logging.getLogger(__name__)

FORMAT = "vid2vid_lite/1"
STATE_FORMAT = "vid2vid_lite/train/1"
LATEST = Path("checkpoints") / "latest.safetensors"
LATEST_STATE = Path("checkpoints") / "latest.pt"


def bundled_dir() -> Path:
    return Path(str(resources.files("vid2vid_lite") / "weights"))


def bundled_names() -> list[str]:
    """Names of the weights shipped inside the package."""
    return sorted(p.stem for p in bundled_dir().glob("*.safetensors"))


def save_generator(path: str | Path, generator: nn.Module, config: dict) -> Path:
    """Write ``generator``'s weights and ``config`` (JSON-serialisable) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in generator.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "config": json.dumps(config)})
    return path


def resolve_weights(spec: str | Path) -> Path:
    """Turn a ``weights=`` value into a checkpoint file, or raise a :class:`UserError`."""
    spec_str = str(spec)
    path = Path(spec_str).expanduser()
    if path.is_dir():
        latest = path / LATEST
        if latest.is_file():
            return latest
        raise UserError(f"{path} is a folder without {LATEST}; give a training run directory or a checkpoint file")
    if path.is_file():
        return path
    if spec_str in bundled_names():
        return bundled_dir() / f"{spec_str}.safetensors"
    known = ", ".join(bundled_names()) or "none bundled yet"
    if os.sep in spec_str or path.suffix:
        raise UserError(f"weights file not found: {spec_str}")
    raise UserError(
        f"unknown weights {spec_str!r}; bundled: {known}. Or give weights=PATH to a checkpoint "
        "file or a training run directory"
    )


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """``(generator state dict, config)`` from a safetensors or weights-only ``.pt`` file."""
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise UserError(f"{path} is not a vid2vid_lite checkpoint (no config inside)")
            return load_file(str(path)), json.loads(meta["config"])
        state = _load_pt(path)
    except (SafetensorError, RuntimeError, OSError, EOFError, ValueError, json.JSONDecodeError) as err:
        raise UserError(f"cannot load checkpoint {path}: {err}") from None
    if not isinstance(state, dict) or "generator" not in state or "config" not in state:
        raise UserError(f"{path} is not a vid2vid_lite checkpoint (no generator/config inside)")
    return state["generator"], state["config"]


def load_generator(spec: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Build the generator a checkpoint describes and load its weights (eval mode)."""
    path = resolve_weights(spec)
    state, config = read_checkpoint(path)
    model = build_generator(config["generator"])
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(
            f"{path} does not fit its own config: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    return model.to(device).eval(), config


def checkpoint_task(config: dict) -> Task:
    """The task a checkpoint's generator was trained for: its whole spec (``task_spec``), or, in
    checkpoints that store only the task's name, that task with default options."""
    return Task.from_spec(config.get("task_spec") or config.get("task", "restore"))


# --------------------------------------------------------------------------- training state


def _load_pt(path: Path):
    return torch.load(path, map_location="cpu", weights_only=True)


def save_state(path: Path, state: dict) -> None:
    """``torch.save`` under a temporary name, then an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path) -> dict:
    """A training state written by :func:`save_training` (weights only: never runs code)."""
    try:
        state = _load_pt(path)
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise UserError(f"cannot load training state {path}: {err}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise UserError(f"{path} is not a vid2vid_lite training state (latest.pt of a run)")
    return state


def save_training(folder: Path, state: dict, generator: nn.Module, keep: bool = False) -> None:
    """Write ``latest.pt`` (``state``, which must hold ``step`` and ``config``) and
    ``latest.safetensors`` (``generator`` with ``state["config"]``) into ``folder``; with
    ``keep`` also ``step_NNNNNN.pt``."""
    state = {"format": STATE_FORMAT, **state, "rng": rng_state()}
    latest = folder / LATEST_STATE.name
    save_state(latest, state)
    save_generator(folder / LATEST.name, generator, state["config"])
    if keep:
        kept = folder / f"step_{int(state['step']):06d}.pt"
        kept.unlink(missing_ok=True)
        try:
            os.link(latest, kept)  # latest.pt is replaced by rename later: the link keeps this one
        except OSError:
            save_state(kept, state)


def resume_path(resume, run_dir: Path, report: bool = True) -> Path | None:
    """The training state ``train.resume`` names: ``true`` (this run directory's latest.pt,
    None when there is none yet), a run directory or a ``.pt`` file; None for ``false``."""
    if resume in (None, False) or str(resume).lower() in ("false", "none", "null", ""):
        return None
    if resume is True or str(resume).lower() == "true":
        path = run_dir / LATEST_STATE
        if not path.is_file():
            if report:
                log.info("train.resume=true: nothing to resume in %s, starting afresh", run_dir)
            return None
        return path
    path = Path(os.path.expanduser(str(resume)))
    if path.is_dir():
        path = path / LATEST_STATE
    if not path.is_file():
        raise UserError(f"train.resume={resume}: no training state found ({path})")
    return path


def rng_state() -> dict:
    """Every global RNG state, as plain types and tensors (``weights_only``-loadable)."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved."""
    random.setstate(_tuples(state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
