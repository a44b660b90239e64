"""Write a labelled side-by-side video (input | baseline | output | reference) to look at.

Usage (Hydra-style ``key=value`` arguments, any subset of the four videos, at least one)::

    python tools/compare.py input=in.mp4 baseline=pix2pix.mp4 output=ours.mp4 \\
        reference=gt.mp4 out=side.mp4 [height=360] [fps=25] [crf=17]

Each video is a file or a folder of frames; ``out`` is a video file (``.mp4``, …) or a folder
(PNG frames).  All videos must have the same number of frames.  Panels are scaled to one
height (``height=``, default the first given video's), kept in the order above and labelled
with their name.  Frame rate and audio come from the first given video file.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np

try:
    from vid2vid_lite.errors import UserError, report_user_errors
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from vid2vid_lite.errors import UserError, report_user_errors
from vid2vid_lite.io import open_sink, open_source

PANELS = ("input", "baseline", "output", "reference")
OPTIONS = {"out": str, "height": int, "fps": float, "crf": int}


def parse_args(argv: list[str]) -> dict:
    """``key=value`` words -> dict; keys are :data:`PANELS` and :data:`OPTIONS`."""
    args: dict = {}
    for word in argv:
        key, sep, value = word.partition("=")
        if not sep or key not in (*PANELS, *OPTIONS):
            raise UserError(f"unexpected argument {word!r}; expected key=value with key one of "
                            f"{', '.join((*PANELS, *OPTIONS))}")  # fmt: skip
        try:
            args[key] = OPTIONS.get(key, str)(value)
        except ValueError:
            raise UserError(f"{key}= expects a number, got {value!r}") from None
    if not any(key in args for key in PANELS):
        raise UserError("give at least one of input=, baseline=, output=, reference=")
    if "out" not in args:
        raise UserError("give out=PATH for the side-by-side video")
    return args


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
            crf: int = 17) -> int:  # fmt: skip
    """Write the side-by-side video of ``paths`` (panel name -> path) to ``out``; returns the
    number of frames written."""
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
            image = side_by_side({n: f.image for n, f in frames.items()}, height)
            if sink is None:
                sink = stack.enter_context(
                    open_sink(out, like=like, width=image.shape[1], height=image.shape[0], fps=fps, crf=crf)
                )
            sink.write(image)
            count += 1
    return count


@report_user_errors
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(word in ("-h", "--help") for word in argv):
        print(__doc__)
        return
    args = parse_args(argv)
    paths = {name: args[name] for name in PANELS if name in args}
    count = compare(paths, args["out"], height=args.get("height"), fps=args.get("fps"),
                    crf=args.get("crf", 17))  # fmt: skip
    print(f"wrote {args['out']}: {count} frames of {' | '.join(paths)}")


if __name__ == "__main__":
    main()
