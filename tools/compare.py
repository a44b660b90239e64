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
from pathlib import Path

try:
    from vid2vid_lite.errors import UserError, report_user_errors
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from vid2vid_lite.errors import UserError, report_user_errors
from vid2vid_lite.compare import PANELS, compare

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
