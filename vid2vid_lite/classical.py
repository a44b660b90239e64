"""Classical video filters through FFmpeg's filter graph (PyAV): the baselines a learned restore
model must beat (``deblock``, ``nlmeans``, ``bm3d``, ``fftdnoiz``, ``atadenoise``, ...).  PyAV's
FFmpeg is an LGPL build: GPL-only filters such as ``hqdn3d``, ``spp`` and ``pp7`` are not in it.

Example:
    >>> from vid2vid_lite.classical import filter_video
    >>> filter_video("degraded.mp4", "nlmeans.mkv", "deblock,nlmeans=s=2")  # doctest: +SKIP

A filter spec is FFmpeg's own syntax, ``name=options``, or several joined by ``,`` (applied in
order).  Temporal filters (atadenoise, fftdnoiz with prev/next, ...) hold frames back; they are flushed at the
end, so the output has every frame, each at its input timestamp.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import av.filter
import numpy as np

from .errors import UserError, ffmpeg_message
from .io import open_sink, open_source


def _graph(spec: str, width: int, height: int) -> av.filter.Graph:
    """``rgb24 buffer -> spec's filters -> buffersink``, configured."""
    graph = av.filter.Graph()
    node = graph.add_buffer(width=width, height=height, format="rgb24", time_base=1)
    try:
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, _, options = part.partition("=")
            nxt = graph.add(name, options)
            node.link_to(nxt)
            node = nxt
        # The output comes back in RGB whatever format the filters worked in.
        fmt = graph.add("format", "pix_fmts=rgb24")
        node.link_to(fmt)
        fmt.link_to(graph.add("buffersink"))
        graph.configure()
    except (av.FFmpegError, ValueError, KeyError) as err:
        raise UserError(f"filter {spec!r} cannot be set up ({ffmpeg_message(err)}); give FFmpeg filter syntax, e.g. nlmeans=s=2") from None
    return graph


def filter_frames(images: Iterator[np.ndarray], spec: str) -> Iterator[tuple[int, np.ndarray]]:
    """Each ``(H, W, 3)`` uint8 RGB frame through the filters of ``spec``: ``(index of the
    input frame, filtered frame)``, in order."""
    graph = None
    for index, image in enumerate(images):
        if graph is None:
            graph = _graph(spec, image.shape[1], image.shape[0])
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = index  # the graph keeps it: it names the input frame of each output
        graph.push(frame)
        yield from _pulled(graph)
    if graph is not None:
        graph.push(None)  # flush what temporal filters hold back
        yield from _pulled(graph)


def _pulled(graph: av.filter.Graph) -> Iterator[tuple[int, np.ndarray]]:
    while True:
        try:
            frame = graph.pull()
        except (av.BlockingIOError, av.EOFError):
            return
        yield frame.pts, frame.to_ndarray(format="rgb24")


def filter_video(source: str | Path, output: str | Path, spec: str, crf: int = 17) -> Path:
    """Write ``source`` (a video or frame folder) through the filters of ``spec`` to ``output``
    (a video or frame folder), keeping every frame's timestamp and the audio, as ``run`` does."""
    with open_source(source) as src, open_sink(output, like=src.info, crf=crf) as sink:
        pts: dict[int, int | None] = {}

        def images() -> Iterator[np.ndarray]:
            for frame in src:
                pts[frame.index] = frame.pts
                yield frame.image

        for index, image in filter_frames(images(), spec):
            sink.write(image, pts.pop(index))
    return Path(output)
