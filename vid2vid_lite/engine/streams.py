"""How frames reach the translator: the video cut into parts (:class:`Part`), parts spread
over lanes that run side by side (:func:`split_lanes`), each part with the frames that warm a
temporal model up before it (:func:`part_pairs`), and an input walked in step with its guide
video (:func:`paired`).

Parts are the unit of work and of a job's crash safety (io/job.py): fixed frame ranges, each
translated on its own.  A temporal model starts every part afresh, warmed up on the ``warmup``
frames before it, so a part's frames are the same whether the parts before it ran in this
process, in another lane or in an earlier, interrupted run.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..io import Frame, Source, VideoInfo, frame_timestamps, open_source
from ..io.job import JobFolder

Pair = tuple[Frame, "np.ndarray | None"]  # a frame and its guide image


@dataclass(frozen=True)
class Part:
    """Frames ``[start, end)`` of the video, part ``index`` of the job; ``end`` None: to the
    end of the video, however many frames the decoder gives."""

    index: int
    start: int
    end: int | None


def part_size(seconds: float, fps: float | None, total: int | None = None, lanes: int = 1, warmup: int = 0) -> int:
    """Frames in a part: ``seconds`` of video, and, where ``lanes`` parts are to run side by
    side, no more than an equal share of ``total`` (but at least twice the warm-up: shorter
    parts are not worth their warm-up)."""
    frames = max(1, round(seconds * (fps or 25.0)))
    if total and lanes > 1:
        frames = min(frames, max(2 * warmup, math.ceil(total / lanes)))
    return max(1, frames)


def parts_to_do(part_frames: int, total: int | None, done: Iterable[int] = ()) -> Iterator[Part]:
    """The parts not yet ``done``, in order; the last runs to the end of the video.  With
    ``total`` None (a video read start to end, whose length is not known) parts are made until
    the reader runs out."""
    done = set(done)
    count = math.ceil(total / part_frames) if total else None
    for i in range(count) if count is not None else itertools.count():
        if i not in done:
            last = count is not None and i == count - 1
            yield Part(i, i * part_frames, None if last else (i + 1) * part_frames)


@dataclass(frozen=True)
class Plan:
    """What a translation reads: the ``parts`` still to do (a list; made as the reader goes
    where the video's length is not known), whether readers may start midway (``seekable``),
    the job's ``part_frames`` and its complete parts (``done``: index -> frames), the frame
    count for the progress bar and the timestamps that readers seek by."""

    parts: list[Part] | Iterator[Part]
    seekable: bool
    part_frames: int
    done: dict[int, int]
    total: int | None
    timestamps: dict[Path, list[int] | None]


def exact_count(info: VideoInfo, timestamps: list[int] | None) -> int | None:
    """A source's frame count where it is known exactly (a frame folder's, or from the packets
    of a video that seeks; a video header's count is only a hint)."""
    return len(timestamps) if timestamps is not None else (info.num_frames if info.kind == "frames" else None)


def plan_parts(source: Source, guide: Source | None, job: JobFolder, lanes: int, warmup: int, part_seconds: float) -> Plan:
    """The parts of ``source`` that ``job`` still needs (its part size fixed now, unless a
    continued job has one), for ``lanes`` lanes side by side.  Readers start midway (lanes, a
    continued job, a guide) only where every video involved seeks; the guide's count is checked
    against the input's first (:class:`UserError`)."""
    info = source.info
    done = job.done()
    midway = lanes > 1 or bool(done) or guide is not None
    timestamps = {info.path: frame_timestamps(info.path) if midway else None}
    total = exact_count(info, timestamps[info.path])
    seekable = midway and total is not None
    if guide is not None:
        timestamps[guide.info.path] = frame_timestamps(guide.info.path)
        guide_total = exact_count(guide.info, timestamps[guide.info.path])
        check_guide(info, guide.info, total, guide_total)
        seekable = seekable and guide_total is not None
    part_frames = job.plan(part_size(part_seconds, info.fps, total if seekable else None, lanes, warmup))
    parts = parts_to_do(part_frames, total if seekable else None, done)
    return Plan(list(parts) if seekable else parts, seekable, part_frames, done, total or info.num_frames, timestamps)


def lane_reads(plan: Plan, lanes: int, warmup: int) -> list[list[tuple[int, Iterable[Part]]]]:
    """The lanes a temporal model runs side by side (at most ``lanes``), each as its reads:
    ``(the frame a reader starts at, the run of consecutive parts it serves)``, ``warmup``
    frames early.  Where readers cannot start midway, one lane reads every part from frame 0."""
    if not plan.seekable:
        return [[(0, plan.parts)]]
    return [[(max(0, run[0].start - warmup), run) for run in runs(group)] for group in split_lanes(plan.parts, lanes)]


class Readers:
    """The input (and guide) read from any frame: :meth:`at` gives the (frame, guide image)
    pairs from a frame on; the readers given serve frame 0 once, later ones are opened there
    (``timestamps``: what they seek by)."""

    def __init__(self, source: Source, guide: Source | None, timestamps: dict[Path, list[int] | None]) -> None:
        self.source, self.guide, self.timestamps = source, guide, timestamps
        self._given_unused = True
        self._opened: list[Source] = [source]

    @contextmanager
    def at(self, first: int) -> Iterator[Iterator[Pair]]:
        if first == 0 and self._given_unused:
            self._given_unused = False
            yield paired(self.source, self.guide)
            return
        with ExitStack() as stack:
            frames, guides = (
                stack.enter_context(open_source(s.info.path, start=first, timestamps=self.timestamps.get(s.info.path)))
                if s is not None else None for s in (self.source, self.guide)
            )
            self._opened.append(frames)
            yield paired(frames, guides)

    def warnings(self) -> list[str]:
        """What the input's readers noted (a header that promised more than the file holds)."""
        return sorted({w for w in (getattr(r, "shortfall", None) for r in self._opened) if w})


def split_lanes(parts: list[Part], lanes: int) -> list[list[Part]]:
    """At most ``lanes`` contiguous groups of ``parts``, as equal as they come."""
    lanes = max(1, min(lanes, len(parts)))
    bounds = [round(i * len(parts) / lanes) for i in range(lanes + 1)]
    return [parts[lo:hi] for lo, hi in zip(bounds, bounds[1:])]


def runs(parts: list[Part]) -> list[list[Part]]:
    """``parts`` in runs of parts that follow each other (one reader serves a run)."""
    out: list[list[Part]] = []
    for part in parts:
        if out and out[-1][-1].end == part.start:
            out[-1].append(part)
        else:
            out.append([part])
    return out


def part_pairs(pairs: Iterable[Pair], parts: Iterable[Part], warmup: int) -> Iterator[tuple[Part, Iterator[Pair]]]:
    """For each part of ``parts`` (in order; ``pairs`` starts at or before the first one's
    warm-up), the pairs a temporal model needs for it: the ``warmup`` frames before it, then its
    own.  Frames of the parts in between (already done) are read and passed over.  Each part's
    iterator must be used up before the next part's is taken.  Ends where ``pairs`` does."""
    pairs = iter(pairs)
    recent: deque[Pair] = deque(maxlen=warmup)
    for part in parts:
        first = None
        for pair in pairs:
            if pair[0].index >= part.start:
                first = pair
                break
            recent.append(pair)
        if first is None:
            return
        yield part, itertools.chain(list(recent), _own_frames(first, pairs, part, recent))


def _own_frames(first: Pair, pairs: Iterator[Pair], part: Part, recent: deque) -> Iterator[Pair]:
    """A part's frames from ``first`` on, each also kept in ``recent`` (the next part's
    warm-up)."""
    rest = pairs if part.end is None else itertools.islice(pairs, part.end - part.start - 1)
    for pair in itertools.chain([first], rest):
        recent.append(pair)
        yield pair


def part_batches(pairs: Iterable[Pair], part_frames: int, done: Iterable[int], size: int) -> Iterator[tuple[int, list[Pair]]]:
    """Consecutive pairs in batches of at most ``size`` that never straddle a part (so a
    part's batches are the same whatever part a run starts at); pairs of ``done`` parts are
    passed over.  After a part's last batch, ``(part, [])`` says it has ended."""
    done = set(done)
    current, batch = None, []
    for pair in pairs:
        part = pair[0].index // part_frames
        if part != current:
            if batch:
                yield current, batch
                batch = []
            if current is not None and current not in done:
                yield current, []
            current = part
        if part in done:
            continue
        batch.append(pair)
        if len(batch) == size:
            yield part, batch
            batch = []
    if batch:
        yield current, batch
    if current is not None and current not in done:
        yield current, []


def check_guide(info: VideoInfo, guide: VideoInfo, frames: int | None = None, guide_frames: int | None = None) -> None:
    """:class:`UserError` where ``guide`` cannot go with the input ``info``: another frame size,
    or another frame count where both are known (``frames`` / ``guide_frames``: exact counts;
    by default a frame folder's own; a video header's count is only a hint)."""
    if guide.size != info.size:
        raise UserError(
            f"size mismatch: the input {info.path} is {info.width}x{info.height} but the guide {guide.path} "
            f"is {guide.width}x{guide.height}; the guide must be the video the input was processed from"
        )
    frames = frames or (info.num_frames if info.kind == "frames" else None)
    guide_frames = guide_frames or (guide.num_frames if guide.kind == "frames" else None)
    if frames and guide_frames and frames != guide_frames:
        raise UserError(
            f"frame count mismatch: the input {info.path} has {frames} frames but the guide {guide.path} "
            f"has {guide_frames}; the guide must be the video the input was processed from"
        )


def paired(source: Source, guide: Source | None) -> Iterator[tuple[Frame, np.ndarray | None]]:
    """Each frame of ``source`` with the image of ``guide``'s frame at the same position (None
    without a guide).  Both readers start at the same frame; a :class:`UserError` where one ends
    before the other (raised before that frame is translated, so no output is half written)."""
    if guide is None:
        yield from ((frame, None) for frame in source)
        return
    guides = iter(guide)
    for frame in source:
        other = next(guides, None)
        if other is None:
            raise UserError(
                f"frame count mismatch: the guide {guide.info.path} has {frame.index} frames but the input "
                f"{source.info.path} has more; the guide must be the video the input was processed from"
            )
        yield frame, other.image
    extra = next(guides, None)
    if extra is not None:
        raise UserError(
            f"frame count mismatch: the input {source.info.path} has {extra.index} frames but the guide "
            f"{guide.info.path} has more; the guide must be the video the input was processed from"
        )
