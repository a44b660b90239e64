"""The deflicker section of tools/results.py: the bundled ``deflicker`` model on held-out clips
and per-frame processes that no training used.

For each held-out clip I (the clean reference) and each case of :data:`CASES`, the processed
video P is I put through a process of ``HELDOUT_PROCESSES`` frame by frame (its parameters
measured from each frame, or drawn at random for each frame), or through the bundled frame-wise
colorize model.  Rows, each measured against P with the flow of I
(``python -m vid2vid_lite.evaluate output=ROW reference=P guide=I``):

- ``stable version``: the same process at the clip's mean parameters (the ideal output;
  not for the colorize model, which has no parameters);
- ``classical (FFmpeg deflicker)``: FFmpeg's ``deflicker`` filter on P (brightness only);
- ``deflicker``: ``python -m vid2vid_lite.run P guide=I weights=deflicker`` (the targets
  score this row);
- ``deflicker, stability=2``: the same with ``stability=2``, the steadier setting README
  offers (the default 1 was chosen on the val clips).

Each row has PSNR and SSIM against P and its warping error with I's flow; ``ewarp_processed``
and ``ewarp_original`` are P's and I's own.  :data:`CONSTANT` is a process without flicker:
the model should leave it alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from vid2vid_lite.classical import filter_video
from vid2vid_lite.datasets.processes import HELDOUT_PROCESSES, frame_params, run_process
from vid2vid_lite.evaluate import evaluate
from vid2vid_lite.io import open_sink, read_video

from docs_deflicker import STEADY  # tools/ is on sys.path when results.py runs
from translate import translate

#: case -> (held-out process, per-frame jitter std; None: measured from each frame), or a bundled model.
CASES: dict[str, tuple[str, float | None] | str] = {
    "white balance, per frame": ("white balance", None),
    "equalize, per frame": ("equalize", None),
    "stylize, random strength": ("stylize", 0.5),
    "colorize-framewise model": "colorize-framewise",
}
CONSTANT = {"stylize, constant strength": ("stylize", 0.0)}
CLASSICAL = "deflicker=size=5:mode=am"
KEPT = ("psnr", "ssim", "ewarp")
#: the model's rows: label -> ``run``'s ``stability=`` and the output's folder in the case's work folder
MODEL_ROWS = {"deflicker": (1.0, "deflicker"), STEADY: (2.0, "deflicker_stability2")}


def write_frames(frames: np.ndarray, folder: Path) -> Path:
    """``(T, H, W, 3)`` uint8 frames as a PNG folder (lossless), replaced if there."""
    if folder.exists():
        shutil.rmtree(folder)
    with open_sink(folder, width=frames.shape[2], height=frames.shape[1], fps=25.0) as sink:
        for frame in frames:
            sink.write(frame)
    return folder


def processed_pair(reference: Path, case, models: dict, work: Path, seed: int) -> tuple[Path, Path | None]:
    """(P, its stable version or None) as PNG folders."""
    if isinstance(case, str):  # a bundled frame-wise model: no parameters, no stable version
        return translate(reference, models[case], work / "processed"), None
    name, jitter = case
    process = HELDOUT_PROCESSES[name]
    frames, _ = read_video(reference)
    params = frame_params(process, frames, np.random.default_rng(seed), jitter or 0.0)
    processed, stable = run_process(process, frames, params)
    return write_frames(processed, work / "processed"), write_frames(stable, work / "stable")


def measure_case(reference: Path, case, models: dict, work: Path, seed: int, constant: bool) -> dict:
    """``{"rows": {label: {psnr, ssim, ewarp}}, "ewarp_processed", "ewarp_original", "constant"}``."""
    work.mkdir(parents=True, exist_ok=True)
    processed, stable = processed_pair(reference, case, models, work, seed)
    outputs = {label: translate(processed, models["deflicker"], work / folder, f"guide={reference}", f"stability={s}")
               for label, (s, folder) in MODEL_ROWS.items()}  # fmt: skip
    classical = work / "classical"
    if classical.exists():
        shutil.rmtree(classical)
    filter_video(processed, classical, CLASSICAL)
    # evaluate measures up to three videos in one pass (the guide's motion computed once and
    # shared): the default output, the classical filter and the stable version; then the others.
    first, *others = MODEL_ROWS
    result = evaluate(outputs[first], processed, baseline=classical, input=stable, guide=reference, vmaf=False)
    labels = {"output": first, "baseline": "classical (FFmpeg deflicker)", "input": "stable version"}
    rows = {label: kept(result.summaries[video]) for video, label in labels.items() if video in result.summaries}
    for label in others:
        rows[label] = kept(evaluate(outputs[label], processed, guide=reference, vmaf=False).summaries["output"])
    return {
        "rows": rows,
        "ewarp_processed": float(result.summaries["output"]["ewarp_ref"]),  # with the guide's flow
        "ewarp_original": float(result.summaries["guide"]["ewarp"]),
        "constant": constant,
    }


def kept(summary: dict) -> dict[str, float]:
    """The :data:`KEPT` numbers of one video's evaluate summary."""
    return {k: float(v) for k, v in summary.items() if k in KEPT}


#: README's picture: this case of the first clip.
FIGURE_CASE = "stylize, random strength"  # the held-out process whose brightness flickers most


def measure(clips: dict[str, Path], models: dict, work: Path, figure: Path | None = None) -> dict:
    """clip -> case -> :func:`measure_case`, for :data:`CASES` and :data:`CONSTANT`; with
    ``figure``, also plot :data:`FIGURE_CASE` of the first clip there."""
    out: dict = {}
    for index, (clip, reference) in enumerate(clips.items()):
        out[clip] = {}
        for j, (case, spec) in enumerate({**CASES, **CONSTANT}.items()):
            folder = work / f"deflicker_{clip}_{j}"
            out[clip][case] = measure_case(reference, spec, models, folder, 100 * index + j, constant=case in CONSTANT)
            if figure is not None and index == 0 and case == FIGURE_CASE:
                plot_brightness(folder, reference, f"{clip}: {case}, stabilised by deflicker", figure)
        print(f"{clip}: deflicker measured", flush=True)
    return out


def plot_brightness(case_folder: Path, reference: Path, title: str, target: Path) -> Path:
    """README's picture: per-frame mean brightness of the original, the processed video, its
    stable version and the deflicker outputs (default and stability=2) of one case (matplotlib, PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {"original": reference, "processed (per frame)": case_folder / "processed",
              "stable version (ideal)": case_folder / "stable", "deflicker output": case_folder / MODEL_ROWS["deflicker"][1],
              "deflicker output, stability=2": case_folder / MODEL_ROWS[STEADY][1]}
    fig, ax = plt.subplots(figsize=(9, 3), dpi=100)
    for label, path in series.items():
        if path.exists():
            frames, _ = read_video(path)
            ax.plot(frames.reshape(len(frames), -1).mean(axis=1), label=label, lw=1.5)
    ax.set_xlabel("frame")
    ax.set_ylabel("mean brightness (0-255)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the plot: no line hidden
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(target)
    return target
