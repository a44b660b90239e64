"""A translation's work folder: the output is written as parts that survive a crash.

``run`` makes ``OUTPUT`` through a folder beside it, ``OUTPUT.v2v-job/``::

    lock                  held (flock) while a run writes OUTPUT: a second run is refused
    manifest.json         what is being made (input, guide, weights and options, with hashes)
                          and the part size
    part-000003.packets   part 3's encoded frames (a frame-folder output: part-000003/ PNGs)
    part-000003.sbs.*     the same part of the side-by-side output
    part-000003.json      part 3 is complete (written last): its frame count
    output.mp4            the output while the parts are joined into it

Parts cover fixed frame ranges ``[i * part_frames, (i + 1) * part_frames)``.  A rerun of the
same command finds the complete parts and translates only the others; a folder whose manifest
differs (another input, weights or options) is cleared.  Once every part is complete they are
joined into the output without re-encoding, the output is renamed into place and the folder is
removed.  A lock held by a killed process is released by the kernel.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import UserError
from .base import is_temporary, write_json

SUFFIX = ".v2v-job"
FORMAT = "vid2vid_lite/job/1"
_EDGE = 1 << 20  # bytes hashed at each end of a large file


def file_digest(path: Path, whole: bool = False) -> str:
    """SHA-256 of a file: the whole file, or (large inputs) its size and first and last MiB,
    enough to tell another file from the same one without reading hours of video."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as f:
        if whole or size <= 2 * _EDGE:
            for block in iter(lambda: f.read(_EDGE), b""):
                digest.update(block)
        else:
            digest.update(f"{size}:".encode())
            digest.update(f.read(_EDGE))
            f.seek(size - _EDGE)
            digest.update(f.read(_EDGE))
    return digest.hexdigest()


def fingerprint(path: str | Path | None) -> dict | None:
    """What identifies an input (a video file or a folder of frames) for a job's manifest."""
    if path is None:
        return None
    path = Path(path).resolve()
    if path.is_dir():
        entries = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir() if p.is_file())
        return {"path": str(path), "files": hashlib.sha256(json.dumps(entries).encode()).hexdigest()}
    return {"path": str(path), "sha256": file_digest(path)}


class JobFolder:
    """The work folder of one output (see the module's docstring).

    Example:
        >>> job = JobFolder(Path("clip_v2v.mp4"))  # doctest: +SKIP
        >>> note = job.start({"input": fingerprint("clip.mp4"), ...}, fresh=False)
        >>> job.plan(250)  # the part size, unless a continued job has one
        >>> ... # write parts (part_path, mark_done), join them, rename the output
        >>> job.remove()
    """

    def __init__(self, output: Path, folder: Path | None = None) -> None:
        self.output = Path(output)
        self.path = folder or self.output.with_name(self.output.name + SUFFIX)
        self.part_frames: int | None = None
        self._identity: dict | None = None
        self._lock: int | None = None

    @classmethod
    def scratch(cls, output: Path) -> JobFolder:
        """A private folder for one translation that is not to be continued (no lock, no
        manifest): for callers of the translator other than ``run``."""
        output = Path(output)
        folder = Path(tempfile.mkdtemp(prefix=f"{output.name}{SUFFIX}-", dir=output.parent))
        return cls(output, folder)

    # -- starting and ending -----------------------------------------------------------
    def start(self, identity: dict, fresh: bool = False) -> str | None:
        """Take the folder for this run: lock it, clear it where it belongs to another job (or
        ``fresh``), drop unfinished files.  Returns a one-line note for the user, or None."""
        self._take_lock()
        stored = self._read_manifest()
        note = None
        if stored is not None and (fresh or stored.get("identity") != identity):
            why = "fresh=true" if fresh else "another input, guide, weights or options"
            note = f"removed the unfinished job for {self.output} ({why})"
            self._clear()
            stored = None
        self._identity = identity
        self.part_frames = stored.get("part_frames") if stored else None
        self._drop_unfinished()
        self._write_manifest()
        done = self.done()
        if done and note is None:
            frames = sum(done.values())
            note = f"continuing {self.output}: {len(done)} complete part(s), {frames} frames, kept from an interrupted run"
        return note

    def plan(self, part_frames: int) -> int:
        """Fix the part size (a continued job keeps its own); returns the one in force."""
        if self.part_frames is None:
            self.part_frames = max(1, int(part_frames))
            if self._identity is not None:
                self._write_manifest()
        return self.part_frames

    def close(self, keep_parts: bool) -> None:
        """End this run's use of the folder: keep the complete parts for a rerun (after a
        failure), or remove the folder (done, or nothing worth keeping)."""
        if keep_parts and self.done():
            self._drop_unfinished()
        else:
            shutil.rmtree(self.path, ignore_errors=True)
        self._release()

    # -- parts -------------------------------------------------------------------------
    def part_path(self, index: int, kind: str = "", suffix: str = ".packets") -> Path:
        """Where part ``index`` of the output (``kind`` "") or of the side-by-side video
        (``kind`` "sbs") is written; ``suffix`` "" for a folder of frames."""
        tag = f".{kind}" if kind else ""
        return self.path / f"part-{index:06d}{tag}{suffix}"

    def mark_done(self, index: int, frames: int) -> None:
        """Record part ``index`` as complete (after its files are closed)."""
        write_json(self.part_path(index, suffix=".json"), {"frames": frames})

    def done(self) -> dict[int, int]:
        """The complete parts: index -> frame count."""
        parts = {}
        for marker in self.path.glob("part-*.json"):
            if is_temporary(marker.name):
                continue  # a marker cut short while being written
            try:
                parts[int(marker.stem.split("-")[1])] = int(json.loads(marker.read_text())["frames"])
            except (ValueError, KeyError, IndexError, OSError):
                continue  # a damaged marker: that part is done again
        return dict(sorted(parts.items()))

    def work_path(self, name: str) -> Path:
        """A file or folder of this job's (e.g. the output while parts are joined into it)."""
        return self.path / name

    # -- internals ---------------------------------------------------------------------
    def _take_lock(self) -> None:
        """flock the folder's lock file; a second run on the same output gets a one-line
        error.  The file is checked to still be the folder's after locking (another run may
        have removed the folder in between)."""
        lock = self.path / "lock"
        while True:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise UserError(
                    f"another run (process {owner}) is writing {self.output}; wait for it to end or choose "
                    "another output="
                ) from None
            try:
                same = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                self._lock = fd
                return
            os.close(fd)

    def _release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the flock
            self._lock = None

    def _read_manifest(self) -> dict | None:
        try:
            manifest = json.loads((self.path / "manifest.json").read_text())
        except (OSError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) and manifest.get("format") == FORMAT else None

    def _write_manifest(self) -> None:
        write_json(self.path / "manifest.json", {"format": FORMAT, "identity": self._identity, "part_frames": self.part_frames})

    def _clear(self) -> None:
        """Remove everything but the lock."""
        self._remove_all_but({"lock"})

    def _drop_unfinished(self) -> None:
        """Remove every file that is not the lock, the manifest or a complete part's."""
        keep = {"lock", "manifest.json"}
        for index in self.done():
            keep.add(self.part_path(index, suffix="").name)  # a frame-folder part
            keep.update(p.name for p in self.path.glob(f"part-{index:06d}.*") if not is_temporary(p.name))
        self._remove_all_but(keep)

    def _remove_all_but(self, keep: set[str]) -> None:
        for entry in self.path.iterdir():
            if entry.name not in keep:
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
