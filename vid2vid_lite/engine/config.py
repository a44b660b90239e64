"""From a training config to what it describes: the task, the network configs, the precision,
the learning-rate schedule and the seeds."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ..datasets.tasks import Task
from ..errors import UserError
from .precision import DTYPES, resolve_precision

#: Tasks whose input already is an image close to the target: a residual output trains faster.
RESIDUAL_TASKS = ("restore", "upscale2x", "colorize", "deflicker")


def container(node) -> dict:
    """A config node as a plain dict (interpolations resolved)."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})


def build_task(data: DictConfig) -> Task:
    """The task ``data`` describes (``data.task``, ``label_nc``, ``edges``, ``restore``,
    ``deflicker``, ``upscale``)."""
    return Task.from_spec({
        "name": str(data.task),
        "label_nc": int(data.get("label_nc") or 0),
        "edge_thresholds": (data.get("edges") or {}).get("thresholds", (100, 200)),
        "degradation": container(data.get("restore")),
        "flicker": container(data.get("deflicker")),
        "downscale": container(data.get("upscale")),
    })


def model_configs(model: DictConfig, task: Task) -> tuple[dict, dict, dict | None, str | None]:
    """(generator, discriminator, temporal discriminator or None, init_from) configs."""
    g = container(model)
    d = g.pop("discriminator", {}) or {}
    dt = g.pop("temporal_discriminator", None)
    init_from = g.pop("init_from", None)
    if g.get("in_channels") in (None, "auto"):
        g["in_channels"] = task.in_channels
    elif int(g["in_channels"]) != task.in_channels:
        raise UserError(f"model.in_channels={g['in_channels']} but task {task.spec} feeds {task.in_channels} channels")
    if g.get("residual") == "auto":
        g["residual"] = task.name in RESIDUAL_TASKS
    d = {**d, "in_channels": task.in_channels, "out_channels": g.get("out_channels", 3)}
    if dt is not None:
        dt = {**dt, "in_channels": task.in_channels, "out_channels": 3}
    return g, d, dt, init_from


@dataclass(frozen=True)
class Precision:
    name: str  # fp32, bf16 or fp16
    dtype: torch.dtype | None  # None: fp32
    scaler: bool  # fp16 on CUDA needs loss scaling


def training_precision(name: str, device: torch.device) -> Precision:
    """``auto``: bf16 on CUDA where supported, else fp16 (scaled); fp32 on the CPU (unlike
    ``run``, training keeps fp32 there: bf16 training on the CPU is not measured here).
    ``bf16`` also works on CPUs with AMX/AVX512-BF16."""
    try:
        name = resolve_precision(device, str(name), cpu_bf16=False)
    except ValueError:
        raise UserError(f"train.precision={name} is not known; use auto, fp32, bf16 or fp16") from None
    return Precision(name, DTYPES[name], name == "fp16" and device.type == "cuda")


def channels_last(setting, device: torch.device) -> bool:
    """``train.channels_last``: ``auto`` is on for CUDA."""
    setting = str(setting)
    return device.type == "cuda" if setting == "auto" else setting in ("true", "True", "1")


def linear_decay(steps: int, decay_start: float) -> Callable[[int], float]:
    """pix2pix's schedule: factor 1 for the first ``decay_start`` fraction of the steps, then
    linearly down to 0 at ``steps``."""
    start = int(round(steps * float(decay_start)))

    def factor(step: int) -> float:
        if step < start or steps <= start:
            return 1.0
        return max(0.0, (steps - step) / (steps - start))

    return factor


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
