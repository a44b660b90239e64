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
import pickle
import pickletools
import random
import re
import struct
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_tensors
from safetensors.torch import save_file
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
USE_OURS = "use a checkpoint written by vid2vid_lite.train, a bundled name, or a training run directory"
USE_STATE = "give a training run directory or its checkpoints/latest.pt"
_GLOBAL = re.compile(r"GLOBAL:?\s+([\w.]+)")  # torch's words: "unsupported GLOBAL posix.system whose ..."


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
    """``(generator state dict, config)`` from a safetensors or weights-only ``.pt`` file, or a
    one-line :class:`UserError` saying what is wrong with it."""
    if _file_kind(path) == "safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            ours = meta.get("format") == FORMAT
            # From the bytes: safe_open's get_tensor keeps about 1 KiB a load alive (safetensors
            # 0.8), which a long-running process that loads models again and again would feel.
            state = load_tensors(path.read_bytes()) if ours else {}
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise UserError(
                f"{path} is a damaged safetensors file ({_one_line(err)}); copy it again, or give another checkpoint"
            ) from None
        if not ours:
            raise UserError(f"{path} is a safetensors file without vid2vid_lite's config (another project's?); {USE_OURS}")
        try:
            config = json.loads(meta.get("config", ""))
        except json.JSONDecodeError:
            config = None
    else:
        checkpoint = _load_pt(path)
        state, config = (checkpoint.get("generator"), checkpoint.get("config")) if isinstance(checkpoint, dict) else ({}, {})
        if not _all_tensors(state):
            what = "a bare state dict, without the config that rebuilds it" if _all_tensors(checkpoint) else (
                "no generator inside")
            raise UserError(f"{path} is not a vid2vid_lite checkpoint ({what}); {USE_OURS}")
    if not isinstance(config, dict) or not isinstance(config.get("generator"), dict):
        raise UserError(f"{path} has a damaged vid2vid_lite config (no generator config inside); {USE_OURS}")
    return state, config


def load_generator(spec: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Build the generator a checkpoint describes and load its weights (eval mode)."""
    path = resolve_weights(spec)
    state, config = read_checkpoint(path)
    try:
        model = build_generator(config["generator"])
        task = checkpoint_task(config)  # run builds it next: fail here, naming the file
        if getattr(model, "scale", 1) != task.scale:
            raise ValueError(f"its model outputs {getattr(model, 'scale', 1)}x the input's size, its task "
                             f"{task.spec} {task.scale}x")
    except (UserError, KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
        raise UserError(
            f"{path} holds a config this version of vid2vid_lite cannot build ({_one_line(err)}); use the "
            "checkpoint as vid2vid_lite.train wrote it, or a newer vid2vid_lite"
        ) from None
    expected = model.state_dict()
    problems = [f"missing {k}" for k in expected if k not in state] + [f"unexpected {k}" for k in state if k not in expected]
    for key, value in state.items():
        want = expected.get(key)
        if want is not None and value.shape != want.shape:
            problems.append(f"{key} has shape {tuple(value.shape)}, not {tuple(want.shape)}")
        elif want is not None and value.is_floating_point() != want.is_floating_point():
            problems.append(f"{key} is {value.dtype}, not {want.dtype}".replace("torch.", ""))
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UserError(f"{path} does not fit its own config: {', '.join(problems[:3])}{more}; it is damaged or "
                        "edited: use the checkpoint as vid2vid_lite.train wrote it")
    model.load_state_dict(state)
    return model.to(device).eval(), config


def checkpoint_task(config: dict) -> Task:
    """The task a checkpoint's generator was trained for: its whole spec (``task_spec``), or, in
    checkpoints that store only the task's name, that task with default options."""
    return Task.from_spec(config.get("task_spec") or config.get("task", "restore"))


# --------------------------------------------------------------------------- reading files safely


def _load_pt(path: Path, what: str = "checkpoint"):
    """``torch.load(weights_only=True)``; a file that tries to run code, is not PyTorch's or is
    damaged gives a one-line :class:`UserError` (never PyTorch's words: they suggest
    ``weights_only=False``)."""
    kind, advice = _file_kind(path), USE_OURS if what == "checkpoint" else USE_STATE
    if kind != "torch":
        not_pt = {"empty": "is empty (0 bytes)", "safetensors": "is a safetensors file"}
        is_what = not_pt.get(kind, "is neither a safetensors nor a PyTorch file")
        raise UserError(f"{path} {is_what}, not a {what}; {advice}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        match = _GLOBAL.search(str(err))
        code = match.group(1) if match else next(iter(_pickle_globals(path)), None)
        if code is None:
            raise UserError(f"{path} is a damaged or unsupported PyTorch file, not a {what}; {advice}") from None
        alternative = " or a .safetensors file" if what == "checkpoint" else ""
        raise UserError(
            f"{path} holds code, not only tensors (it tries to load {code}); refused: a {what} must never run "
            f"code. Use a {what} written by vid2vid_lite.train{alternative}"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError, KeyError, TypeError, IndexError, AttributeError,
            zipfile.BadZipFile, struct.error) as err:
        detail = _one_line(err) or "it ends early"
        raise UserError(
            f"{path} is a damaged or incomplete PyTorch file ({detail}); copy it again, or give another {what}"
        ) from None


def _file_kind(path: Path) -> str:
    """``safetensors``, ``torch`` (zip or legacy pickle), ``empty`` or ``other``, from the first
    bytes (a safetensors file with a damaged header still counts as one by its suffix)."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}") from None
    if not head:
        return "empty"
    if len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= path.stat().st_size - 8:
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return "torch"
    if path.suffix == ".safetensors":
        return "safetensors"
    return "torch" if head.startswith(b"\x80") else "other"  # a legacy torch.save pickle


def _pickle_globals(path: Path) -> list[str]:
    """The globals a ``.pt`` file's pickles name that ``weights_only`` does not allow, read with
    :mod:`pickletools` (nothing runs): ``data.pkl`` in a zip, or a legacy file's pickles in a row."""
    allowed = set(getattr(getattr(torch, "_weights_only_unpickler", None), "_get_allowed_globals", dict)())
    found: list[str] = []
    with open(path, "rb") as f:
        try:
            archive = zipfile.ZipFile(f) if zipfile.is_zipfile(f) else None
            f.seek(0)
            streams = [archive.open(n) for n in archive.namelist() if n.endswith("data.pkl")] if archive else [f] * 5
            for stream in streams:
                strings, memo, last = [], {}, None
                for op, arg, _ in pickletools.genops(stream):
                    if op.name in ("GLOBAL", "STACK_GLOBAL"):
                        found.append(arg.replace(" ", ".") if arg else ".".join(strings[-2:]))
                    elif op.name == "MEMOIZE":
                        memo[len(memo)] = last
                    elif op.name.endswith("GET") and isinstance(memo.get(arg), str):
                        strings.append(memo[arg])
                    last = arg if isinstance(arg, str) and "UNICODE" in op.name else None
                    strings += [last] if last is not None else []
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            pass  # what was read so far
    return [name for name in found if name not in allowed]


def _all_tensors(value) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def _one_line(err: BaseException) -> str:
    """The first line of an error's text, short, without ``weights_only`` advice."""
    if isinstance(err, KeyError):
        return f"no {err.args[0]!r}" if err.args else "KeyError"
    line = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), "").split(". ")[0]
    return "" if "weights_only" in line else line[:160]


# --------------------------------------------------------------------------- training state


def save_state(path: Path, state: dict) -> None:
    """``torch.save`` under a temporary name, then an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path) -> dict:
    """A training state written by :func:`save_training` (weights only: never runs code)."""
    state = _load_pt(path, "training state")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise UserError(f"{path} is not a vid2vid_lite training state; {USE_STATE}")
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
