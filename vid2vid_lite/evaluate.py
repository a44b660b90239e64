"""Measure a translated video against its reference (and a baseline): metrics, table, plots.

Usage::

    python -m vid2vid_lite.evaluate output=PATH reference=PATH [baseline=PATH] [input=PATH] \\
        [guide=PATH] [measure_dis_preset=medium] [vmaf=true] [hydra.run.dir=DIR]

Each PATH is a video file or a folder of frames; all must have the same frame count and size
(else ``error: …`` and exit status 2).  The videos are streamed side by side, never loaded
whole.  The run directory (default ``runs/evaluate/<date>_<time>``) receives

- ``metrics.json``: ``{"output": {metric: value}, "baseline": {…}, "input": {…}, "guide": {…},
  "relative_change": {metric: percent}, "settings": {…}}`` (``baseline``, ``input``, ``guide``
  and ``relative_change`` only when given; NaN is written as null),
- ``per_frame.csv``: one row per frame, columns ``<video>_<metric>``,
- ``psnr.png`` and ``ewarp.png``: per-frame PSNR and warping error of each video.

Metric definitions: :mod:`vid2vid_lite.metrics`.  ``relative_change`` is
``100 (output - baseline) / |baseline|``.

``guide`` (``deflicker``: the reference is the per-frame processed video, the guide the original
it was made from) moves the truth of the temporal metrics to the guide: its flow (``ewarp``,
``ewarp_ref``: the processed reference's own warping error), its Farnebäck flow (``tof``) and
its brightness changes (``flicker``); PSNR and SSIM stay against the reference.  The guide is
also measured as a column of its own (its ``ewarp``: how stable the original is).
"""

from __future__ import annotations

import csv
import math
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from tqdm import tqdm

from .errors import UserError, report_user_errors
from .flow import DIS_PRESETS, DISFlow
from .io import open_source
from .io.base import atomic_path
from .io.base import write_json as write_strict_json  # this module has a write_json of its own
from .metrics import PSNR_CAP, SSIM_WINDOW, VideoMetrics, reference_motion, vmaf_available

# Videos measured against the reference, in table order.
VIDEOS = ("output", "baseline", "input", "guide")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "vmaf": True, "ewarp": False, "ewarp_ref": False,
                    "tof": False, "flicker": False}  # fmt: skip
UNITS = {"psnr": "dB", "tof": "px"}


@dataclass
class Evaluation:
    """summaries: video name -> metric -> average; rows: video name -> per-frame rows."""

    summaries: dict[str, dict[str, float]]
    rows: dict[str, list[dict[str, float]]]
    settings: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return len(self.rows["output"])

    def relative_change(self) -> dict[str, float]:
        """Percent change of output vs baseline per metric (empty without a baseline)."""
        if "baseline" not in self.summaries:
            return {}
        out, base = self.summaries["output"], self.summaries["baseline"]
        return {name: _percent(out[name], base[name]) for name in out}


def _percent(value: float, base: float) -> float:
    if math.isnan(value) or math.isnan(base):
        return math.nan
    if base == 0:
        return 0.0 if value == 0 else math.copysign(math.inf, value)
    return 100.0 * (value - base) / abs(base)


# --------------------------------------------------------------------------- measuring


def _open(stack: ExitStack, paths: dict[str, str]) -> dict:
    sources = {}
    for name, path in paths.items():
        if not Path(path).exists():
            raise UserError(f"{name}={path} not found; give a video file or a folder of frames")
        try:
            sources[name] = stack.enter_context(open_source(path))
        except UserError as err:
            raise UserError(f"{name}: {err}") from None
    ref = sources["reference"].info
    for name, src in sources.items():
        if src.info.size != ref.size:
            raise UserError(
                f"size mismatch: {name} is {src.info.width}x{src.info.height} but reference is "
                f"{ref.width}x{ref.height}; all inputs must have the same frame size"
            )
    # Frame folders know their exact count: fail before any work.  (A video's declared
    # count may be approximate, so videos are checked while streaming.)
    counts = {n: s.info.num_frames for n, s in sources.items() if s.info.kind == "frames"}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{n} has {c}" for n, c in counts.items())
        raise UserError(f"frame count mismatch: {listed}; all inputs must have the same number of frames")
    return sources


def _zip_frames(sources: dict):
    """Yield ``{name: (H, W, 3) uint8}`` frame by frame; a stream ending early is a UserError."""
    iterators = {name: iter(src) for name, src in sources.items()}
    index = 0
    while True:
        frames = {name: next(it, None) for name, it in iterators.items()}
        ended = sorted(name for name, frame in frames.items() if frame is None)
        if len(ended) == len(frames):
            return
        if ended:
            longer = sorted(set(frames) - set(ended))
            raise UserError(
                f"frame count mismatch: {', '.join(ended)} ended after {index} frames but "
                f"{', '.join(longer)} has more; all inputs must have the same number of frames"
            )
        yield {name: frame.image for name, frame in frames.items()}
        index += 1


def evaluate(
    output: str | Path,
    reference: str | Path,
    baseline: str | Path | None = None,
    input: str | Path | None = None,  # noqa: A002 - the CLI's word
    guide: str | Path | None = None,
    measure_dis_preset: str = "medium",
    vmaf: bool = True,
    progress: bool = False,
) -> Evaluation:
    """Stream the videos and measure output (and baseline, input, guide) against reference.

    The reference's motion (DIS flow with validity, Farnebäck flow, brightness change), or the
    ``guide``'s where one is given, is computed once per frame pair and shared by all measured
    videos.  Raises :class:`UserError` on missing, unreadable or mismatched inputs.
    """
    if measure_dis_preset not in DIS_PRESETS:
        raise UserError(f"unknown measure_dis_preset={measure_dis_preset!r}; choose one of {', '.join(DIS_PRESETS)}")
    given = {"output": output, "baseline": baseline, "input": input, "guide": guide}
    paths = {name: str(p) for name, p in given.items() if p is not None}
    paths["reference"] = str(reference)
    dis = DISFlow(measure_dis_preset)
    use_vmaf = bool(vmaf) and vmaf_available()
    measured = [name for name in VIDEOS if name in paths]
    meters = {name: VideoMetrics(dis, vmaf=use_vmaf) for name in measured}

    with ExitStack() as stack:
        sources = _open(stack, paths)
        total = sources["reference"].info.num_frames
        bar = stack.enter_context(tqdm(total=total, unit="frame", disable=not progress, desc="evaluate"))
        moving = "guide" if "guide" in paths else "reference"  # whose motion is the truth
        previous = None
        for frames in _zip_frames(sources):
            ref = frames["reference"]
            motion = None if previous is None else reference_motion(frames[moving], previous, dis)
            for name in measured:
                meters[name].update(frames[name], ref, motion)
            previous = frames[moving]
            bar.update(1)

    if not len(meters["output"]):
        raise UserError("the inputs hold no frames")
    settings = {
        "flow": "dis",
        "motion_from": moving,
        "measure_dis_preset": measure_dis_preset,
        "occlusion": "forward-backward check + motion boundaries (Lai et al. 2018)",
        "psnr_cap_db": PSNR_CAP,
        "ssim_window": SSIM_WINDOW,
        "tof_flow": "farneback",
        "vmaf": use_vmaf,
        "num_frames": len(meters["output"]),
        "width": sources["reference"].info.width,
        "height": sources["reference"].info.height,
        "paths": paths,
    }
    return Evaluation(
        summaries={name: m.summary() for name, m in meters.items()},
        rows={name: m.rows() for name, m in meters.items()},
        settings=settings,
    )


# --------------------------------------------------------------------------- reporting


def _fmt(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4g}"


def format_table(result: Evaluation, labels: dict[str, str] | None = None) -> str:
    """The terminal table: one row per metric, one column per video (headed by ``labels``,
    default its name), and with a baseline the relative change of the output and whether it
    is better."""
    labels = labels or {}
    names = [n for n in VIDEOS if n in result.summaries]
    change = result.relative_change()
    output = labels.get("output", "output")
    header = ["metric", *(labels.get(n, n) for n in names)] + (["change", f"{output} is"] if change else [])
    lines = [header]
    for metric in result.summaries["output"]:
        unit = f" ({UNITS[metric]})" if metric in UNITS else ""
        arrow = "higher" if HIGHER_IS_BETTER.get(metric, True) else "lower"
        row = [f"{metric}{unit}, {arrow} is better"]
        row += [_fmt(result.summaries[n][metric]) for n in names]
        if change:
            pct = change[metric]
            row.append("-" if math.isnan(pct) else f"{pct:+.1f} %")
            out, base = result.summaries["output"][metric], result.summaries["baseline"][metric]
            if metric == "ewarp_ref" or math.isnan(pct) or out == base:
                row.append("")
            else:
                row.append("better" if (out > base) == HIGHER_IS_BETTER.get(metric, True) else "worse")
        lines.append(row)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def write_json(result: Evaluation, path: Path) -> None:
    data = dict(result.summaries)
    if "baseline" in result.summaries:
        data["relative_change"] = result.relative_change()
    data["settings"] = result.settings
    write_strict_json(path, data)


def write_csv(result: Evaluation, path: Path) -> None:
    """One row per frame: ``frame, output_psnr, …, baseline_psnr, …``; NaN cells are empty."""
    names = [n for n in VIDEOS if n in result.rows]
    metrics = list(result.summaries["output"])
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["frame"] + [f"{n}_{m}" for n in names for m in metrics])
        for i in range(result.num_frames):
            cells = [result.rows[n][i][m] for n in names for m in metrics]
            writer.writerow([i] + ["" if math.isnan(v) else f"{v:.6g}" for v in cells])


def write_plots(result: Evaluation, folder: Path) -> list[Path]:
    """``psnr.png`` and ``ewarp.png``: per-frame curves of every measured video."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    names = [n for n in VIDEOS if n in result.rows]
    frames = np.arange(result.num_frames)
    written = []
    for metric, title, ylabel in (
        ("psnr", "Per-frame PSNR against the reference (higher is better)", "PSNR (dB)"),
        ("ewarp", "Per-frame warping error (lower is more stable)", "warping error"),
    ):
        fig, ax = plt.subplots(figsize=(9, 4), constrained_layout=True)
        for name in names:
            values = [row[metric] for row in result.rows[name]]
            ax.plot(frames, values, label=name, linewidth=1.2)
        if metric == "ewarp":  # a real video's stability, for scale
            ref = [row["ewarp_ref"] for row in result.rows["output"]]
            ax.plot(frames, ref, label="reference", color="black", linestyle="--", linewidth=1)
        ax.set(title=title, xlabel="frame", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        path = folder / f"{metric}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def write_report(result: Evaluation, folder: Path, plots: bool = True) -> list[Path]:
    """Write metrics.json, per_frame.csv and (with ``plots``) the PNGs into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "metrics.json", folder / "per_frame.csv"]
    write_json(result, written[0])
    write_csv(result, written[1])
    if plots:
        written += write_plots(result, folder)
    return written


# --------------------------------------------------------------------------- CLI


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
@report_user_errors  # inside hydra.main: Hydra catches exceptions but lets SystemExit through
def main(cfg: DictConfig) -> None:
    missing = [key for key in ("output", "reference") if not cfg.get(key)]
    if missing:
        raise UserError(
            f"missing {' and '.join(k + '=PATH' for k in missing)}; usage: python -m "
            "vid2vid_lite.evaluate output=PATH reference=PATH [baseline=PATH] [input=PATH] [guide=PATH]"
        )
    result = evaluate(
        cfg.output,
        cfg.reference,
        baseline=cfg.get("baseline") or None,  # `baseline=` (empty) means none
        input=cfg.get("input") or None,
        guide=cfg.get("guide") or None,
        measure_dis_preset=cfg.measure_dis_preset,
        vmaf=cfg.vmaf,
        progress=cfg.progress,
    )
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    written = write_report(result, run_dir, plots=cfg.plots)
    print(f"{result.num_frames} frames, {result.settings['width']}x{result.settings['height']}, "
          f"DIS preset {result.settings['measure_dis_preset']}")  # fmt: skip
    print(format_table(result))
    print("wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
