"""Command-line plumbing shared by the Hydra apps: positional paths and device names."""

from __future__ import annotations

import os
import re

import torch

from .errors import UserError

# Hydra flags that take the next argument as their value.
_FLAGS_WITH_VALUE = {
    "-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir", "--experimental-rerun",
    "-c", "--cfg", "-p", "--package",
}
_INFO_TOPICS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def quote_override(value: str) -> str:
    """Quote ``value`` for Hydra's override grammar, so that spaces, commas, ``=``, quotes,
    brackets and ``${`` in a path survive as one plain string."""
    # Hydra reads a backslash as an escape only in front of a quote or at the end of the
    # string, so only those runs of backslashes are doubled.
    escaped = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value)
    escaped = escaped.replace("'", "\\'").replace("${", "\\${")
    return f"'{escaped}'"


def lift_positional(argv: list[str], key: str = "input") -> list[str]:
    """Turn the first positional argument into the override ``key=...``.

    Hydra reads every argument as an override, so ``run clip.mp4`` must become
    ``run input='clip.mp4'``.  An argument is positional when it names an existing path or
    does not look like an override (no ``=``, no leading ``+``/``~``/``-``).  A second
    positional argument is an error.
    """
    out: list[str] = []
    found = False
    skip_next = False
    for i, arg in enumerate(argv):
        if skip_next:
            out.append(arg)
            skip_next = False
            continue
        if arg in _FLAGS_WITH_VALUE:
            skip_next = True
            out.append(arg)
            continue
        if arg in ("-i", "--info") and i + 1 < len(argv) and argv[i + 1] in _INFO_TOPICS:
            skip_next = True
            out.append(arg)
            continue
        looks_like_override = "=" in arg or arg[:1] in ("+", "~", "-")
        if os.path.exists(arg) or not looks_like_override:
            if found:
                raise UserError(f"only one input path is taken, got a second one: {arg}")
            out.append(f"{key}={quote_override(arg)}")
            found = True
        else:
            out.append(arg)
    return out


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device={name} but CUDA is not available here; use device=cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device={name} but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type != "cpu":
        raise UserError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    return device
