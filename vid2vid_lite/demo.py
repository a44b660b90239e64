"""The demo that ``python -m vid2vid_lite.run`` gives when it is called without an input.

It takes the bundled sample clip (5 s of Big Buck Bunny, 480x270), shrinks it to half size
(the area filter), enlarges that ×2 again with OpenCV's Lanczos, with the bundled frame-wise
model ``upscale2x-framewise`` and with the temporal one ``upscale2x``, and writes into
``demo_dir`` (default ``v2v_demo/``): each one's frames (PNG, lossless), a labelled
side-by-side video (Lanczos | frame-wise | temporal | original) and the evaluation report.
The scores are taken on the lossless frames, so the table measures the upscalers, not a video
encoder.  Big Buck Bunny is among the upscale2x training clips: docs/RESULTS.md measures the
models on clips that no training saw.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from .checkpoint import bundled_names
from .compare import compare
from .datasets.degradations import downscale
from .datasets.tasks import even_crop, lanczos
from .errors import UserError
from .evaluate import evaluate, format_table, write_report
from .io import open_source, write_video

MODELS = {"framewise": "upscale2x-framewise", "temporal": "upscale2x"}
#: What the report's videos are in the demo (evaluate's and compare's names -> shown labels).
LABELS = {"input": "Lanczos", "baseline": "frame-wise", "output": "temporal", "reference": "original"}


def sample_clip() -> Path:
    return Path(str(resources.files("vid2vid_lite") / "data" / "sample.mp4"))


def run_demo(cfg: DictConfig, translate) -> Path:
    """Run the demo; ``translate`` is :func:`vid2vid_lite.run.translate` (one video)."""
    missing = [name for name in MODELS.values() if name not in bundled_names()]
    if missing:
        raise UserError(
            f"the demo needs the bundled weights {', '.join(missing)}, which this install lacks; "
            "give an input: python -m vid2vid_lite.run INPUT weights=PATH"
        )
    folder = Path(str(cfg.demo_dir)).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    with open_source(sample_clip()) as source:
        fps = source.info.fps
        original = even_crop(np.stack([frame.image for frame in source]))
    small = [downscale(frame) for frame in original]
    height, width = small[0].shape[:2]
    print(f"demo: {sample_clip().name} shrunk to {width}x{height}, enlarged x2 -> {folder}")
    reference = write_video(folder / "original", original)
    half = write_video(folder / "half_size", small)
    frames = {"input": write_video(folder / "lanczos", (lanczos(image) for image in small))}
    for key, (kind, weights) in zip(("baseline", "output"), MODELS.items()):
        job = OmegaConf.merge(cfg, {"input": str(half), "output": str(folder / kind), "weights": weights, "fps": fps})
        frames[key] = translate(job)
    side = folder / "side_by_side.mp4"
    compare({**{key: str(path) for key, path in frames.items()}, "reference": str(reference)}, str(side), fps=fps,
            labels=LABELS)
    # VMAF (optional extra) is left out: on a CPU it would take the demo past two minutes.
    result = evaluate(frames["output"], reference, baseline=frames["baseline"], input=frames["input"], vmaf=False)
    written = write_report(result, folder / "report")
    print(format_table(result, LABELS))
    print(f"demo: frames (PNG) {folder}/lanczos, {frames['baseline']} (frame-wise), {frames['output']} (temporal)")
    print(f"demo: side by side (Lanczos | frame-wise | temporal | original) {side}")
    print(f"demo: report {', '.join(str(p) for p in written)}")
    return folder
