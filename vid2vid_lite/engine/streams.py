"""How frames reach the translator: a video cut into segments that run side by side
(:func:`plan_segments`), and an input walked in step with its guide video (:func:`paired`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from ..io import Frame, Source, VideoInfo


@dataclass(frozen=True)
class Segment:
    """Frames ``[start, end)`` of the video, read from ``read_from`` (``start - warmup``); the
    last segment has ``end`` None: it runs to the end of the video, however many frames the
    decoder gives."""

    read_from: int
    start: int
    end: int | None


def plan_segments(num_frames: int, batch: int, warmup: int) -> list[Segment]:
    """Cut ``num_frames`` into at most ``batch`` equal segments, each (but the first) warmed up
    by ``warmup`` frames.  Segments shorter than twice the warm-up are not worth it: fewer
    segments are used then."""
    count = max(1, min(batch, num_frames // max(1, 2 * warmup)))
    bounds = [round(i * num_frames / count) for i in range(count)] + [None]
    return [
        Segment(read_from=max(0, start - warmup) if i else 0, start=start, end=end)
        for i, (start, end) in enumerate(zip(bounds, bounds[1:]))
    ]


def check_guide(info: VideoInfo, guide: VideoInfo, frames: int | None = None, guide_frames: int | None = None) -> None:
    """:class:`UserError` where ``guide`` cannot go with the input ``info``: another frame size,
    or another frame count where both are known (``frames`` / ``guide_frames``: exact counts,
    by default the sources' own, which a video's container may not know)."""
    if guide.size != info.size:
        raise UserError(
            f"size mismatch: the input {info.path} is {info.width}x{info.height} but the guide {guide.path} "
            f"is {guide.width}x{guide.height}; the guide must be the video the input was processed from"
        )
    frames, guide_frames = frames or info.num_frames, guide_frames or guide.num_frames
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
