"""Labelled side-by-side views of several videos (input | baseline | output | reference), for a
person to look at.  Used by ``tools/compare.py`` and the demo."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np

from .errors import UserError
from .io import open_sink, open_source

PANELS = ("input", "baseline", "output", "reference")
def label(image: np.ndarray, text: str) -> np.ndarray:
    """Draw ``text`` on a dark box in the top-left corner of ``image`` (H, W, 3) uint8 RGB."""
    image = image.copy()
    scale = max(0.4, image.shape[0] / 480)
    thickness = max(1, round(scale * 1.5))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(3, round(4 * scale))
    cv2.rectangle(image, (0, 0), (w + 2 * pad, h + base + 2 * pad), (0, 0, 0), thickness=-1)
    cv2.putText(image, text, (pad, pad + h), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                thickness, cv2.LINE_AA)  # fmt: skip
    return image


def side_by_side(panels: dict[str, np.ndarray], height: int) -> np.ndarray:
    """Scale every ``(H, W, 3)`` panel to ``height``, label it and join left to right; width
    and height are padded to even numbers (yuv420p needs them)."""
    row = []
    for name, image in panels.items():
        if image.shape[0] != height:
            width = max(1, round(image.shape[1] * height / image.shape[0]))
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        row.append(label(image, name))
    joined = np.concatenate(row, axis=1)
    pad_h, pad_w = joined.shape[0] % 2, joined.shape[1] % 2
    return np.pad(joined, ((0, pad_h), (0, pad_w), (0, 0))) if pad_h or pad_w else joined


def compare(paths: dict[str, str], out: str, height: int | None = None, fps: float | None = None,
            crf: int = 17, labels: dict[str, str] | None = None) -> int:  # fmt: skip
    """Write the side-by-side video of ``paths`` (panel name -> path) to ``out``; returns the
    number of frames written.  ``labels``: the text shown on a panel (default: its name)."""
    labels = labels or {}
    with ExitStack() as stack:
        sources = {}
        for name in PANELS:
            if name in paths:
                if not Path(paths[name]).exists():
                    raise UserError(f"{name}={paths[name]} not found; give a video file or a folder of frames")
                sources[name] = stack.enter_context(open_source(paths[name]))
        infos = [s.info for s in sources.values()]
        height = height or infos[0].height
        like = next((i for i in infos if i.kind == "video"), infos[0])
        iterators = {name: iter(src) for name, src in sources.items()}
        sink = None
        count = 0
        while True:
            frames = {name: next(it, None) for name, it in iterators.items()}
            ended = [name for name, frame in frames.items() if frame is None]
            if len(ended) == len(frames):
                break
            if ended:  # the sink's context drops the unfinished output
                raise UserError(f"frame count mismatch: {', '.join(ended)} ended after {count} frames "
                                "but the others have more")  # fmt: skip
            image = side_by_side({labels.get(n, n): f.image for n, f in frames.items()}, height)
            if sink is None:
                sink = stack.enter_context(
                    open_sink(out, like=like, width=image.shape[1], height=image.shape[0], fps=fps, crf=crf)
                )
            sink.write(image)
            count += 1
    return count
