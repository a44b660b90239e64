"""Generator checkpoints that carry their own config and can never run code.

A generator checkpoint is a safetensors file: the weights, plus the JSON config needed to
rebuild the network (``generator``: the :func:`vid2vid_lite.nn.build_generator` config,
``task``: the task name, ``task_spec``: the whole task (:meth:`Task.to_spec`: Canny thresholds,
label classes, degradation), and free-form ``meta``).  Training-state checkpoints (optimisers,
RNG) are ``.pt`` files read with ``torch.load(weights_only=True)``; they hold the same
``config`` and ``generator`` entries, so either can be given to ``run``.

``weights=`` accepts a bundled name (``vid2vid_lite/weights/NAME.safetensors``), a checkpoint
file, or a training run directory (its ``checkpoints/latest.safetensors``).
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .datasets.tasks import Task
from .errors import UserError
from .io.base import atomic_path
from .nn import build_generator

FORMAT = "vid2vid_lite/1"
LATEST = Path("checkpoints") / "latest.safetensors"


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
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, OSError, ValueError, json.JSONDecodeError) as err:
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
