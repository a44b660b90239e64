"""Which files are videos and which are frames, for reading and for writing: one place.

- :data:`MUXERS`: the video containers the writer makes, by suffix, with FFmpeg's muxer name;
  :data:`WRITABLE_VIDEO_SUFFIXES` are their suffixes (an output with another suffix is a
  folder of PNGs).
- :data:`READABLE_VIDEO_SUFFIXES`: the files taken as videos when a folder of training data is
  scanned.  Any file FFmpeg demuxes can still be read when its own path is given.
- :data:`IMAGE_SUFFIXES` and :func:`list_images`: the files of a folder that are its frames.
"""

from __future__ import annotations

import re
from pathlib import Path

from .base import is_temporary

#: FFmpeg muxer names of the video suffixes we write.
MUXERS = {".mp4": "mp4", ".mkv": "matroska", ".webm": "webm", ".mov": "mov"}
#: Suffixes written as video (anything else is written as a folder of PNGs).
WRITABLE_VIDEO_SUFFIXES = tuple(MUXERS)
#: Suffixes taken as videos inside a folder of training data.
#: (Every container of README's "Which files work", so that a folder scan takes what `run` reads.)
READABLE_VIDEO_SUFFIXES = (
    ".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".m2ts", ".mts", ".flv", ".f4v",
    ".swf", ".wmv", ".asf", ".vob", ".m1v", ".m2v", ".3gp", ".3g2", ".ogv", ".rm", ".gif", ".dv", ".y4m",
)
#: Suffixes of the images a frame folder is made of.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers by value: ``f2`` < ``f10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_images(folder: Path) -> list[Path]:
    """The frames of ``folder``: its image files (by suffix) in natural order, hidden files
    and our unfinished outputs skipped."""
    files = [
        p for p in Path(folder).iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and not is_temporary(p.name)
    ]
    return sorted(files, key=lambda p: natural_key(p.name))
