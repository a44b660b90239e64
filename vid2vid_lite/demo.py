"""The demo that ``python -m vid2vid_lite.run`` gives when it is called without an input.

It takes the bundled sample clip (5 s of Big Buck Bunny, 480x270, with its sound), degrades it
as a user's heavily compressed upload looks (x264 at CRF 38), restores it with the
bundled temporal model and with the frame-wise one, and writes both outputs, a labelled
side-by-side video (degraded | frame-wise | temporal | original) and the evaluation report into
``demo_dir`` (default ``v2v_demo/``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from .checkpoint import bundled_names
from .compare import compare
from .datasets.tasks import RestoreDegradation
from .errors import UserError
from .evaluate import evaluate, format_table, write_report
from .io import open_sink, open_source

#: The degradation the demo shows: fixed, so that every run shows the same thing.
DEMO_DEGRADATION = RestoreDegradation.x264(crf=(38, 38), preset="medium")
MODELS = {"framewise": "restore-framewise", "temporal": "restore"}


def sample_clip() -> Path:
    return Path(str(resources.files("vid2vid_lite") / "data" / "sample.mp4"))


def degrade(clip: Path, target: Path) -> Path:
    """Write ``clip`` degraded by :data:`DEMO_DEGRADATION` (timestamps and audio kept)."""
    with open_source(clip) as source, open_sink(target, like=source.info) as sink:
        frames = list(source)  # 132 frames of 480x270: small
        degraded = DEMO_DEGRADATION((f.image for f in frames), np.random.default_rng(0), fps=source.info.fps)
        for frame, image in zip(frames, degraded):
            sink.write(image, frame.pts)
    return target


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
    original = sample_clip()
    print(f"demo: degrading {original.name} (x264 CRF 38) -> {folder}/degraded.mp4")
    degraded = degrade(original, folder / "degraded.mp4")
    outputs = {}
    for kind, weights in MODELS.items():
        job = OmegaConf.merge(cfg, {"input": str(degraded), "output": str(folder / f"{kind}.mp4"), "weights": weights})
        outputs[kind] = translate(job)
    side = folder / "side_by_side.mp4"
    compare({"input": str(degraded), "baseline": str(outputs["framewise"]), "output": str(outputs["temporal"]),
             "reference": str(original)}, str(side))
    # VMAF (optional extra) is left out: on a CPU it would take the demo past two minutes.
    result = evaluate(outputs["temporal"], original, baseline=outputs["framewise"], input=degraded, vmaf=False)
    written = write_report(result, folder / "report")
    print(format_table(result))
    print(f"demo: outputs {outputs['temporal']} (temporal), {outputs['framewise']} (frame-wise)")
    print(f"demo: side by side (degraded | frame-wise | temporal | original) {side}")
    print(f"demo: report {', '.join(str(p) for p in written)}")
    return folder
