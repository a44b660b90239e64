"""Translated frames written as the parts of a job (io/job.py), then joined into the output.

Each part (a fixed range of frames) has its own encoder, set up like the output's, writing on a
thread of its own into the job folder; several parts may be written at once (a temporal model's
lanes run side by side).  A part that is complete is marked so in the job folder, where a
continued run finds it.  :meth:`PartOutputs.join` appends every part, in order, to the output
(and the side-by-side video) without re-encoding.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from .base import BackgroundWriter, Frame
from .job import JobFolder
from .open import Sink, is_video_path


def side_by_side(frame: Frame, image: np.ndarray) -> np.ndarray:
    """input | output, the input scaled to the output's size where they differ."""
    source = frame.image
    if source.shape[:2] != image.shape[:2]:
        source = cv2.resize(source, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_CUBIC)
    return np.concatenate([source, image], axis=1)


@dataclass
class _Open:
    """A part being written: its writers (output, side by side) and their threads."""

    writers: list  # VideoPart / folder part, one per sink
    threads: list[BackgroundWriter]


class PartOutputs:
    """Where translated frames go: part ``i`` of ``sink`` (and of ``side_sink``: input | output)
    in ``job``'s folder.

    Args:
        job: the job folder; its ``part_frames`` fixes which frames make part ``i``.
        sink: the output (a video or frame-folder sink with ``part`` and ``append_part``).
        side_sink: the side-by-side output, or None.
    """

    def __init__(self, job: JobFolder, sink: Sink, side_sink: Sink | None = None) -> None:
        self.job, self.sinks = job, [sink] if side_sink is None else [sink, side_sink]
        self._open: dict[int, _Open] = {}  # parts taking frames
        self._ending: list[BackgroundWriter] = []  # threads closing the parts that have all theirs

    def _paths(self, part: int):
        for kind, sink in zip(("", "sbs"), self.sinks):
            yield sink, self.job.part_path(part, kind, ".packets" if is_video_path(sink.path) else "")

    def put(self, part: int, frame: Frame, image: np.ndarray) -> None:
        """Queue ``image``, the translation of ``frame``, for part ``part``."""
        if part not in self._open:
            first = part * self.job.part_frames
            writers = [sink.part(first, path) for sink, path in self._paths(part)]
            self._open[part] = _Open(writers, [BackgroundWriter(w.write, name=f"v2v-encode-{part}") for w in writers])
        threads = self._open[part].threads
        threads[0].put(image, frame.pts)
        if len(threads) > 1:
            threads[1].put(side_by_side(frame, image), frame.pts)

    def end(self, part: int) -> None:
        """Part ``part`` has all its frames: its writers close and mark it complete on their
        threads, while the next frames are translated."""
        state = self._open.pop(part, None)
        if state is None:
            return  # no frame (an empty tail)
        remaining, lock = [len(state.writers)], threading.Lock()

        def close(writer) -> None:
            writer.close()
            with lock:  # the last writer to close marks the part
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                self.job.mark_done(part, state.writers[0].frames_written)

        for writer, thread in zip(state.writers, state.threads):
            thread.end(lambda w=writer: close(w))
        # Let go of the parts already closed, and of their encoders: memory stays flat however
        # many parts a long video has.
        for thread in [t for t in self._ending if not t.running]:
            thread.finish()  # re-raises its error
            self._ending.remove(thread)
        self._ending.extend(state.threads)

    def finish(self) -> None:
        """Close the parts still open (with the frames they have) and wait for every part's
        writers; re-raise a writer's error."""
        for part in list(self._open):
            self.end(part)
        for thread in self._ending:
            thread.finish()
        self._ending.clear()

    def discard(self) -> None:
        """Drop the parts still taking frames; those that have all theirs are completed (a
        continued run keeps them)."""
        for state in self._open.values():
            for thread in state.threads:
                thread.stop()
            for writer in state.writers:
                writer.abort()
        self._open.clear()
        for thread in self._ending:
            try:
                thread.finish()
            except Exception:  # noqa: BLE001 - that part is simply not complete
                pass
        self._ending.clear()

    def join(self, stop_at_gap: bool = False) -> int:
        """Append every complete part, in order, to the sinks (without re-encoding); returns
        the frames joined.  Parts must follow each other from 0 without a gap, else
        ValueError; with ``stop_at_gap`` the join ends at the first gap or short part instead
        (``on_error=keep``: the frames before the damage)."""
        done = self.job.done()
        expected = list(range(len(done)))
        if list(done) != expected and not stop_at_gap:
            raise ValueError(f"the job's parts {list(done)} do not follow each other from 0")
        frames = 0
        for part in expected:
            if part not in done:
                break
            for sink, path in self._paths(part):
                sink.append_part(path, done[part])
            frames += done[part]
            if stop_at_gap and done[part] < self.job.part_frames:
                break
        return frames
