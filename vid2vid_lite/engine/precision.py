"""Precision names (``auto``, ``fp32``, ``bf16``, ``fp16``) and their autocast, for ``run`` and
``train`` alike."""

from __future__ import annotations

from contextlib import nullcontext

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: The autocast dtype of each concrete precision (None: no autocast).
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_computes_bf16() -> bool:
    """True where the CPU has bf16 instructions (AVX512-BF16 or AMX).  There bf16 autocast ran
    the bundled models 1.7x faster than fp32 (640x360, one thread) with every frame within one
    level of 255 of fp32's; elsewhere bf16 is emulated and slower than fp32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(device: torch.device, precision: str, cpu_bf16: bool = True) -> str:
    """The concrete precision ``fp32``, ``bf16`` or ``fp16`` for ``precision`` on ``device``.

    ``auto`` is bf16 on CUDA where supported (else fp16), and on the CPU bf16 where it computes
    bf16 (:func:`cpu_computes_bf16`) and ``cpu_bf16`` allows it, else fp32.  An unknown name is
    a ``ValueError``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if device.type == "cpu" and cpu_bf16 and cpu_computes_bf16() else "fp32"


def autocast_for(device: torch.device, precision: str):
    """The autocast context for ``precision`` on ``device`` (see :func:`resolve_precision`)."""
    dtype = DTYPES[resolve_precision(device, precision)]
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)
