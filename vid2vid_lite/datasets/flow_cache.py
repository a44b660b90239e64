"""On-disk caches for training: decoded frames and DIS flows, computed once per video.

Everything is keyed by content: a key is the SHA-1 of the input files' bytes plus every
setting that changes the result (load size, task, degradation seed, flow preset, ...), so an
edited video or a changed setting gets a new entry and an unchanged one is never recomputed,
whatever its path.  Entries are plain raw arrays (``np.memmap``) with a ``meta.json``; each is
written into a hidden temporary folder and renamed into place when complete, so a killed run
or two jobs preparing the same video at once never leave a half-written entry.

Flow layout (all ``N`` frames of a video, at the cached frame size):

- ``bwd.f16`` ``(N, H, W, 2)`` float16: backward flow t -> t-1 in pixels (zero at t = 0 and at
  the first frame of every shot);
- ``fwd.f16`` ``(N, H, W, 2)`` float16: forward flow t -> t+1 (zero at the last frame of a shot);
- ``valid.u8`` ``(N, H, W)`` uint8: 1 where ``bwd`` passes the forward-backward occlusion test
  (:func:`vid2vid_lite.nn.warp.occlusion_mask`), 0 elsewhere and at shot starts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..flow import DISFlow
from ..io.base import discard, temporary_sibling
from ..io.formats import list_images
from ..nn.warp import occlusion_mask, resize_flow

log = logging.getLogger(__name__)

CACHE_VERSION = 1
_HASHES: dict[tuple, str] = {}


# --------------------------------------------------------------------------- keys


def content_hash(path: Path) -> str:
    """SHA-1 of a file's bytes, or of a frame folder's image names and bytes (memoised per run
    by path, size and modification time)."""
    path = Path(path)
    if path.is_dir():
        files = list_images(path)
    else:
        files = [path]
    stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if stamp in _HASHES:
        return _HASHES[stamp]
    digest = hashlib.sha1()
    for f in files:
        if path.is_dir():
            digest.update(f.name.encode() + b"\0")
        with open(f, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    _HASHES[stamp] = digest.hexdigest()
    return _HASHES[stamp]


def settings_key(**settings) -> str:
    """A short key for a JSON-serialisable set of settings (the cache version included)."""
    text = json.dumps({"version": CACHE_VERSION, **settings}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:20]


# --------------------------------------------------------------------------- raw arrays


def write_raw(path: Path, rows: Iterable[np.ndarray], dtype) -> tuple[int, ...]:
    """Write equally shaped rows to a raw file; returns the full shape ``(N, *row.shape)``."""
    count, shape = 0, None
    with open(path, "wb") as handle:
        for row in rows:
            row = np.ascontiguousarray(row, dtype=dtype)
            if shape is None:
                shape = row.shape
            elif row.shape != shape:
                raise ValueError(f"row {count} has shape {row.shape}, the first had {shape}")
            handle.write(row.tobytes())
            count += 1
    return (count, *(shape or ()))


def open_raw(path: Path, dtype, shape: Iterable[int], mode: str = "r") -> np.ndarray:
    """Memory-map a raw array written by :func:`write_raw` (or create one with ``mode="w+"``)."""
    return np.memmap(path, dtype=dtype, mode=mode, shape=tuple(int(s) for s in shape))


class CacheEntry:
    """Build a cache folder atomically: ``with CacheEntry(folder) as tmp: ...write into tmp``.

    If ``folder`` already holds a complete entry (its ``meta.json``), :attr:`exists` is True and
    nothing should be written.  On success the temporary folder is renamed to ``folder``; if
    another process got there first, ours is dropped.  On error it is removed.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.tmp: Path | None = None

    @property
    def exists(self) -> bool:
        return (self.folder / "meta.json").is_file()

    def __enter__(self) -> Path:
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temporary_sibling(self.folder, directory=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        if exc_type is not None or self.exists:
            discard(self.tmp)
            return
        try:
            os.rename(self.tmp, self.folder)
        except OSError:  # a concurrent job finished the same entry first
            discard(self.tmp)


def read_meta(folder: Path) -> dict:
    return json.loads((Path(folder) / "meta.json").read_text())


def write_meta(folder: Path, meta: dict) -> None:
    (Path(folder) / "meta.json").write_text(json.dumps(meta, indent=1))


# --------------------------------------------------------------------------- flows


@dataclass(frozen=True)
class FlowFiles:
    """A cached flow entry: memory-map it with :meth:`open`."""

    folder: Path
    shape: tuple[int, int, int]  # (N, H, W)

    def open(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(bwd (N, H, W, 2) f16, fwd (N, H, W, 2) f16, valid (N, H, W) u8)`` read-only maps."""
        n, h, w = self.shape
        return (
            open_raw(self.folder / "bwd.f16", np.float16, (n, h, w, 2)),
            open_raw(self.folder / "fwd.f16", np.float16, (n, h, w, 2)),
            open_raw(self.folder / "valid.u8", np.uint8, (n, h, w)),
        )


def compute_flows(
    view: Callable[[int], np.ndarray],
    shape: tuple[int, int, int],
    shot_starts: Iterable[int],
    folder: Path,
    preset: str = "fast",
    workers: int | None = None,
) -> None:
    """Compute the DIS flows of every consecutive frame pair inside each shot into ``folder``.

    Args:
        view: frame index -> what DIS sees, ``(H, W)`` or ``(H, W, 3)`` uint8, or smaller (the
            half-size input of a ×2 model: its flows are stored resized to ``shape``,
            :func:`~vid2vid_lite.nn.warp.resize_flow`).
        shape: ``(N, H, W)`` of the stored flows.
        shot_starts: frame indices that start a shot (no flow to the previous frame).
        preset: DIS preset.
        workers: threads (OpenCV releases the GIL); default: the CPU count, at most 8.
    """
    n, h, w = shape
    bwd = open_raw(folder / "bwd.f16", np.float16, (n, h, w, 2), mode="w+")
    fwd = open_raw(folder / "fwd.f16", np.float16, (n, h, w, 2), mode="w+")
    valid = open_raw(folder / "valid.u8", np.uint8, (n, h, w), mode="w+")
    starts = set(int(s) for s in shot_starts) | {0}
    dis = DISFlow(preset)

    def pair(t: int) -> None:
        prev, cur = view(t - 1), view(t)
        b = torch.from_numpy(dis.flow(cur, prev)).permute(2, 0, 1)[None]
        f = torch.from_numpy(dis.flow(prev, cur)).permute(2, 0, 1)[None]
        mask = occlusion_mask(b, f).float()
        b, mask = resize_flow(b, (h, w), mask)  # a view at the input's size of a ×2 model
        f, _ = resize_flow(f, (h, w))
        bwd[t] = b[0].permute(1, 2, 0).numpy()
        fwd[t - 1] = f[0].permute(1, 2, 0).numpy()
        valid[t] = mask[0, 0].numpy().astype(np.uint8)

    pairs = [t for t in range(1, n) if t not in starts]
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers, thread_name_prefix="v2v-dis") as pool:
        list(pool.map(pair, pairs))
    for array in (bwd, fwd, valid):
        array.flush()


def cached_flows(
    cache_dir: Path,
    key: str,
    view: Callable[[int], np.ndarray],
    shape: tuple[int, int, int],
    shot_starts: Iterable[int],
    preset: str,
    label: str = "",
) -> FlowFiles:
    """The flows of one video, from the cache or computed now (see :func:`compute_flows`)."""
    entry = CacheEntry(Path(cache_dir) / "flow" / key)
    if not entry.exists:
        log.info("computing %s flow (DIS %s) for %s", label or "the", preset, key)
        with entry as tmp:
            compute_flows(view, shape, list(shot_starts), tmp, preset)
            write_meta(tmp, {"shape": list(shape), "preset": preset, "label": label})
    meta = read_meta(entry.folder)
    return FlowFiles(entry.folder, tuple(meta["shape"]))
