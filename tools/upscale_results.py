"""The upscale section of tools/results.py: the bundled ``upscale2x`` models (×2 super-resolution)
against classical interpolation on clips that no training used.

Per clip, the reference is the clip cropped to even sizes; the low-resolution input is each
reference frame area-downscaled by 2 (``vid2vid_lite.datasets.degradations.downscale``), measured in two
cases (:data:`CASES`): ``clean`` (the low-resolution frames as lossless PNGs) and ``x264 CRF 23``
(the same frames encoded by x264 at CRF 23, preset medium).  Every method gets the same decoded RGB
frames and writes PNGs at the reference's size:

- ``bicubic``, ``Lanczos``: OpenCV's ×2 ``INTER_CUBIC`` and ``INTER_LANCZOS4``;
- ``frame-wise``, ``temporal``: ``python -m vid2vid_lite.run INPUT weights=W`` (fp32) with the
  ``upscale2x-framewise`` and ``upscale2x`` models.

Each is measured against the reference (PSNR, SSIM, and the warping error and tOF with the
reference's flow, which the models never see).  Clips named ``move_*`` are camera moves over
photos; the others are real videos; the section keeps the means over each group.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from vid2vid_lite.datasets.degradations import downscale
from vid2vid_lite.datasets.tasks import even_crop, lanczos
from vid2vid_lite.evaluate import evaluate
from vid2vid_lite.io import list_images, read_video, write_video
from vid2vid_lite.io.frames import read_image

from deflicker_results import write_frames  # tools/ is on sys.path when results.py runs
from translate import translate

INPUT_CRF = 23
CASES = ("clean", f"x264 CRF {INPUT_CRF}")
METHODS = ("bicubic", "Lanczos", "frame-wise", "temporal")
KEPT = ("psnr", "ssim", "ewarp", "ewarp_ref", "tof", "flicker")
GROUPS = ("real clips", "photo moves")
#: the picture's clip where measured (a face and hair: fine texture), else the first clip
FIGURE_CLIP = "single_face"
FIGURE_CROP = 64
FIGURE_ZOOM = 4


def group_of(clip: str) -> str:
    """``photo moves`` for a camera move over a photo (``move_*``), else ``real clips``."""
    return "photo moves" if clip.startswith("move_") else "real clips"


def interpolate(frames: np.ndarray, method: str) -> np.ndarray:
    """``(T, H, W, 3)`` -> ``(T, 2H, 2W, 3)`` with ``bicubic`` or ``Lanczos``."""
    if method == "Lanczos":
        return np.stack([lanczos(f) for f in frames])
    return np.stack([cv2.resize(f, (2 * f.shape[1], 2 * f.shape[0]), interpolation=cv2.INTER_CUBIC) for f in frames])


def kept(summary: dict) -> dict[str, float]:
    """The :data:`KEPT` numbers of one video's evaluate summary."""
    return {k: float(v) for k, v in summary.items() if k in KEPT}


def measure_case(reference: Path, model_input: Path, models: dict, work: Path) -> dict[str, dict[str, float]]:
    """method -> metrics for one low-resolution input (a video file or a PNG folder)."""
    decoded, _ = read_video(model_input)  # what every method gets
    outputs = {m: write_frames(interpolate(decoded, m), work / m.lower()) for m in ("bicubic", "Lanczos")}
    outputs["frame-wise"] = translate(model_input, models["upscale2x-framewise"], work / "framewise")
    outputs["temporal"] = translate(model_input, models["upscale2x"], work / "temporal")
    # evaluate measures up to three videos with one pass of the reference's flow; then bicubic
    result = evaluate(outputs["temporal"], reference, baseline=outputs["frame-wise"], input=outputs["Lanczos"], vmaf=False)
    rows = {"temporal": kept(result.summaries["output"]), "frame-wise": kept(result.summaries["baseline"]),
            "Lanczos": kept(result.summaries["input"])}
    rows["bicubic"] = kept(evaluate(outputs["bicubic"], reference, vmaf=False).summaries["output"])
    return {m: rows[m] for m in METHODS}


def measure_clip(clip: Path, models: dict, work: Path) -> dict:
    """case -> method -> metrics for one clip; its frames stay in ``work``."""
    frames, info = read_video(clip)
    frames = even_crop(frames)
    reference = write_frames(frames, work / "reference")
    small = np.stack([downscale(f) for f in frames])
    inputs = {"clean": write_frames(small, work / "clean_input"),
              CASES[1]: write_video(work / f"input_crf{INPUT_CRF}.mkv", small, fps=info.fps or 25.0, crf=INPUT_CRF)}
    return {case: measure_case(reference, path, models, work / case_folder(case)) for case, path in inputs.items()}


def case_folder(case: str) -> str:
    return "clean" if case == "clean" else f"crf{INPUT_CRF}"


def means(section: dict, clips: list[str]) -> dict:
    """case -> method -> metric -> mean over ``clips`` (empty without clips)."""
    if not clips:
        return {}
    first = section[clips[0]]
    return {case: {m: {k: float(np.mean([section[c][case][m][k] for c in clips])) for k in first[case][m]}
                   for m in first[case]} for case in first}


def measure(clips: dict[str, Path], models: dict, work: Path, figure: Path | None = None) -> dict:
    """``{clip: {case: {method: metrics}}}`` for every clip, with ``groups`` (clip names per
    group), ``means`` (group -> case -> method -> metrics) and ``files``; with ``figure``, also
    draw the zoomed crop there and record where it is under ``figure``."""
    work = work.resolve()  # translate runs from the repository root
    out: dict = {}
    for clip, path in clips.items():
        out[clip] = measure_clip(path, models, work / f"upscale_{clip}")
        print(f"{clip}: upscale measured", flush=True)
    groups = {g: [c for c in clips if group_of(c) == g] for g in GROUPS}
    section = {**out, "groups": groups, "means": {g: means(out, names) for g, names in groups.items()},
               "files": {clip: path.name for clip, path in clips.items()}}
    if figure is not None:
        clip = FIGURE_CLIP if FIGURE_CLIP in clips else next(iter(clips))
        section["figure"] = draw_crop(work / f"upscale_{clip}", clip, figure)
    return section


def textured_region(image: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left ``(x, y)`` of the ``size``×``size`` window of ``image`` with the highest gray variance."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    mean, square = cv2.blur(gray, (size, size)), cv2.blur(gray * gray, (size, size))
    h, w = gray.shape
    half = size // 2  # cv2.blur's window for pixel p starts at p - size // 2
    variance = (square - mean * mean)[half : h - size + half + 1, half : w - size + half + 1]
    y, x = np.unravel_index(int(np.argmax(variance)), variance.shape)
    return int(x), int(y)


def draw_crop(folder: Path, clip: str, target: Path) -> dict:
    """README's picture: one region of the clean case's middle frame, zoomed ×4 (nearest
    neighbour): Lanczos | frame-wise | temporal | original.  Returns where the region is."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {"Lanczos": folder / "clean" / "lanczos", "frame-wise": folder / "clean" / "framewise",
              "temporal": folder / "clean" / "temporal", "original": folder / "reference"}
    index = len(list_images(panels["original"])) // 2
    images = {label: read_image(list_images(path)[index]) for label, path in panels.items()}
    size = min(FIGURE_CROP, *images["original"].shape[:2])
    x, y = textured_region(images["original"], size)
    panel, gap, top = size * FIGURE_ZOOM, 12, 44  # pixels: each panel shows the crop's pixels exactly
    width, height = len(panels) * (panel + gap) + gap, panel + top + gap
    fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)
    for i, (label, image) in enumerate(images.items()):
        ax = fig.add_axes(((gap + i * (panel + gap)) / width, gap / height, panel / width, panel / height))
        crop = image[y : y + size, x : x + size]
        ax.imshow(crop.repeat(FIGURE_ZOOM, axis=0).repeat(FIGURE_ZOOM, axis=1), interpolation="nearest")
        ax.set_title(label, fontsize=11)
        ax.axis("off")
    fig.suptitle(f"{clip}, frame {index}: {size}×{size} px at x={x}, y={y}, ×{FIGURE_ZOOM} nearest neighbour", fontsize=9)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(target)
    return {"clip": clip, "frame": index, "x": x, "y": y, "size": size, "zoom": FIGURE_ZOOM, "path": target.name}


def record_experiment(label: str, data: dict, path: Path | None = None) -> None:
    """Keep the validation numbers of ``data``'s upscale2x models under ``label`` in
    docs/measurements/val_upscale.json (what was tried, docs/TRAINING.md): per clip and input
    case, each model's PSNR over Lanczos (dB) and the temporal model's warping error and tOF
    over the frame-wise model's."""
    path = path or Path(__file__).resolve().parents[1] / "docs" / "measurements" / "val_upscale.json"
    section = data["sections"]["upscale"]
    record = json.loads(path.read_text()) if path.exists() else {}
    clips = {}
    for clip in section["groups"]["real clips"] + section["groups"]["photo moves"]:
        clips[clip] = {}
        for case, rows in section[clip].items():
            t, f, lz = rows["temporal"], rows["frame-wise"], rows["Lanczos"]["psnr"]
            clips[clip][case] = {"frame-wise": f["psnr"] - lz, "temporal": t["psnr"] - lz,
                                 "ewarp_ratio": t["ewarp"] / f["ewarp"], "tof_ratio": t["tof"] / f["tof"]}
    record[label] = {"date": data["date"], "models": {k: data["models"][k] for k in ("upscale2x", "upscale2x-framewise")},
                     "groups": section["groups"], "clips": clips}
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"recorded {label!r} in {path}")
