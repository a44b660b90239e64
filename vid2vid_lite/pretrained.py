"""Optional pretrained weights (the VGG loss, RAFT flow): local files only, nothing is ever
downloaded."""

from __future__ import annotations

import os

from .errors import UserError


def require_local_weights(path: str | os.PathLike | None, what: str, key: str, otherwise: str) -> str:
    """Check that optional pretrained weights (VGG, RAFT) name a local file: nothing is ever
    downloaded.  ``key`` is the config key to set; ``otherwise`` says how to do without."""
    if not path:
        raise UserError(f"{what} needs a local weights file ({key}=/path/to/file); nothing is downloaded. {otherwise}")
    if not os.path.isfile(path):
        raise UserError(f"{what} weights file not found: {path}")
    return str(path)
