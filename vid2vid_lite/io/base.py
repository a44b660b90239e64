"""Types shared by every reader and writer, a background prefetcher and atomic paths."""

from __future__ import annotations

import json
import math
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB, already turned upright.
        index: 0-based position in the source.
        pts: presentation timestamp in ``VideoInfo.time_base`` units (None for frame folders).
        time: presentation time in seconds (None for frame folders).
    """

    image: np.ndarray
    index: int
    pts: int | None = None
    time: float | None = None


@dataclass(frozen=True)
class VideoInfo:
    """What a source is: enough for a writer to reproduce its size, timing and audio.

    ``width``/``height`` are the upright (display) size.  ``rotation`` is the display
    rotation the file asked for (degrees, counter-clockwise), already applied to the frames.
    ``num_frames`` is the container's count and may be None or approximate for video.
    """

    path: Path
    kind: Literal["video", "frames"]
    width: int
    height: int
    fps: float | None = None
    num_frames: int | None = None
    time_base: Fraction | None = None
    rotation: int = 0
    has_audio: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.height, self.width


class _End:
    """Marks the end of a prefetched stream."""


class Prefetcher:
    """Run ``produce`` in a daemon thread and hand its items over through a bounded queue.

    Memory stays bounded by ``maxsize`` items whatever the stream length.  An exception in the
    producer is re-raised in the consumer, after the items produced before it.  A sequence of
    producers runs each in a thread of its own, all feeding the one queue: their items are
    merged in the order they arrive, and iteration ends when every producer has ended.
    """

    def __init__(
        self,
        produce: Callable[[], Iterator] | Sequence[Callable[[], Iterator]],
        maxsize: int = 8,
        name: str = "v2v-prefetch",
    ):
        producers = list(produce) if isinstance(produce, Sequence) else [produce]
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, maxsize))
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(p,), name=name if len(producers) == 1 else f"{name}-{i}", daemon=True)
            for i, p in enumerate(producers)
        ]
        for thread in self._threads:
            thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, produce: Callable[[], Iterator]) -> None:
        try:
            for item in produce():
                if not self._put(item):
                    return
            self._put(_End)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            self._put(err)

    def __iter__(self) -> Iterator:
        running = len(self._threads)
        while running:
            item = self._queue.get()
            if item is _End:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)


class AtomicSink:
    """A writer whose output appears only when :meth:`close` completes; :meth:`abort` (or an
    exception inside ``with``) leaves nothing behind.  Subclasses implement ``write``,
    ``close`` and ``abort``."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


#: Marks the names of unfinished outputs: ``NAME.v2v-tmp-XXXX`` files and ``NAME.v2v-job``
#: folders (io/job.py).  Visible, so that one left by a killed process can be found.
TEMPORARY_MARK = ".v2v-"


def is_temporary(name: str) -> bool:
    """True for the name of one of our unfinished outputs (never read as input)."""
    return TEMPORARY_MARK in name


def temporary_sibling(path: Path, directory: bool = False) -> Path:
    """A fresh temporary path ``NAME.v2v-tmp-XXXX`` in the same folder as ``path`` (same
    filesystem: rename is atomic).  For files the suffix is kept so that muxers can guess the
    format."""
    path = Path(path)
    prefix = f"{path.name}{TEMPORARY_MARK}tmp-"
    if directory:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=path.suffix, dir=path.parent)
    os.close(fd)
    return Path(name)


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask would set it
    for a moment, racing other threads that create files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def commit(temporary: Path, final: Path) -> None:
    """Move a finished temporary file or folder onto ``final`` (replacing an old output).

    ``mkstemp``/``mkdtemp`` create private (0600/0700) entries; the output gets the usual
    permissions instead (0666/0777 less the umask), as if it had been created directly."""
    os.chmod(temporary, (0o777 if temporary.is_dir() else 0o666) & ~_umask())
    if temporary.is_dir() and final.exists():
        old = temporary_sibling(final, directory=True)
        old.rmdir()
        os.replace(final, old)
        os.replace(temporary, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(temporary, final)


@contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Write a file under a temporary name beside ``final``; it becomes ``final`` only when
    the ``with`` block completes (checkpoints, reports).

    Example:
        >>> with atomic_path("metrics.json") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("{}")
    """
    final = Path(final)
    tmp = temporary_sibling(final)
    try:
        yield tmp
    except BaseException:
        discard(tmp)
        raise
    commit(tmp, final)


def write_json(path: str | Path, data) -> None:
    """Write ``data`` as strict JSON (NaN and infinities as null), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")


def _finite(value):
    """NaN / inf -> None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def discard(temporary: Path) -> None:
    """Remove an unfinished temporary file or folder."""
    if temporary.is_dir():
        shutil.rmtree(temporary, ignore_errors=True)
    else:
        temporary.unlink(missing_ok=True)


class BackgroundWriter:
    """Call ``write(*args)`` of a sink in a background thread, through a bounded queue, so that
    encoding overlaps with the model.  Errors in the thread are re-raised on the next call or
    at :meth:`finish`."""

    def __init__(self, write: Callable[..., None], maxsize: int = 8, name: str = "v2v-encode"):
        self._write = write
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, maxsize))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _End:
                return
            if self._error is None:
                try:
                    item[0]() if isinstance(item, _Last) else self._write(*item)
                except BaseException as err:  # noqa: BLE001 - re-raised in the caller
                    self._error = err

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, *args) -> None:
        self._raise()
        self._queue.put(args)

    def end(self, then: Callable[[], None] | None = None) -> None:
        """Nothing more will be put: the thread calls ``then`` after the last write (closing
        the sink there, so that the caller need not wait) and ends."""
        if then is not None:
            self._queue.put(_Last((then,)))
        self._queue.put(_End)

    @property
    def running(self) -> bool:
        """False once the thread has ended (after :meth:`end`, or :meth:`stop`)."""
        return self._thread.is_alive()

    def finish(self) -> None:
        """Wait until everything queued is written; re-raise a writer error."""
        if self._thread.is_alive():
            self._queue.put(_End)
        self._thread.join()
        self._raise()

    def stop(self) -> None:
        """End the thread without writing what is still queued (the output is being dropped)."""
        if self._thread.is_alive():
            if self._error is None:
                self._error = RuntimeError("writer stopped")  # the thread skips the rest
            self._queue.put(_End)
            self._thread.join()


class _Last(tuple):
    """A queued call to make after the last write (:meth:`BackgroundWriter.end`)."""
