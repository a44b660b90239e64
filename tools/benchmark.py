"""Inference speed and memory of vid2vid_lite on this machine.

    python tools/benchmark.py [--sizes 256x256 640x360] [--repeats 3] [--baseline REV] [--demo] [--out FILE]

The results go to docs/measurements/benchmark-DATE-COMMIT.json (or ``--out``), from which
tools/render_docs.py writes docs/BENCHMARKS.md and the README's demo time.

For each model (the bundled frame-wise and temporal ones, or untrained models of the same
architecture when no bundled weights exist — the speed does not depend on the weights) and each
size it measures:

- model-only fps: the generator alone on tensors already in memory (for the temporal model the
  flow is given, so this is the network's cost), the better of one pass on all cores and
  ``run``'s CPU workers (passes in parallel threads, one a core);
- end-to-end fps of ``python -m vid2vid_lite.run`` on a 10 s clip (decode + task input + flow +
  model + encode), as the command reports it;
- peak RSS (VmHWM) of that command for a 10 s and a 60 s clip (the 60 s clip is run once).

With ``--baseline REV`` each end-to-end run is repeated, back to back, by the code of git
revision REV (checked out into a temporary worktree, the same weights files), and the ratio
of the two is reported: the before/after of a change.  With ``--demo`` it also times the
no-argument demo (``python -m vid2vid_lite.run`` with no input; the README quotes it).

All of it under ``run``'s ``precision`` (``--precision``; default ``auto``, which is bf16 on CPUs
with bf16 instructions).  Each number is the median of ``--repeats`` runs; each ratio is the median of ratios taken within
one repeat, whose measurements run back to back (the machine is noisy).  With ``--cuda`` it instead measures fps on the GPU at
512x512 and 1024x512 for batch 1, 4 and 16.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import torch

from vid2vid_lite.checkpoint import bundled_dir, bundled_names, load_generator, save_generator
from vid2vid_lite.datasets.synthetic import camera_pan, load_photo
from vid2vid_lite.datasets.tasks import get_task
from vid2vid_lite.engine.allocator import keep_freed_memory
from vid2vid_lite.engine.precision import PRECISIONS, autocast_for, resolve_precision
from vid2vid_lite.engine.translator import cpu_workers
from vid2vid_lite.io import write_video
from vid2vid_lite.nn import build_generator
from vid2vid_lite.nn.unet import rgb_of

ROOT = Path(__file__).resolve().parents[1]

#: The architecture of the bundled models (see docs/MODEL_CARD.md).
BUNDLED_ARCH = {"ngf": 16, "depth": 5, "residual": True}


#: Untrained stand-ins of the bundled models (the speed does not depend on the weights):
#: kind -> (bundled name, task, generator config).
STAND_INS = {
    "framewise": ("restore-framewise", "restore", {"name": "framewise", **BUNDLED_ARCH}),
    "temporal": ("restore", "restore", {"name": "temporal", **BUNDLED_ARCH}),
    "deflicker": ("deflicker", "deflicker", {"name": "temporal", "in_channels": 6, **BUNDLED_ARCH}),
    "upscale2x": ("upscale2x", "upscale2x", {"name": "temporal_sr", "channels": 16, "layers": 7, "use_validity": False}),
}


def models(folder: Path, deflicker: bool = False, upscale: bool = False) -> dict[str, Path]:
    """Checkpoints to measure: the bundled ones, else untrained stand-ins of that architecture
    (``deflicker``: also the deflicker model, a temporal one with a 6-channel input;
    ``upscale``: also the temporal ×2 model, whose output is twice the input's size)."""
    out = {}
    kinds = ["framewise", "temporal"] + (["deflicker"] if deflicker else []) + (["upscale2x"] if upscale else [])
    for kind in kinds:
        bundled, task, config = STAND_INS[kind]
        if bundled in bundled_names():
            out[kind] = bundled_dir() / f"{bundled}.safetensors"  # a path: a baseline tree runs the same file
            continue
        model = build_generator(config)
        out[kind] = save_generator(folder / f"{kind}.safetensors", model,
                                   {"generator": model.config, "task": get_task(task).to_spec()})
    return out


def make_clip(path: Path, width: int, height: int, seconds: float, fps: int = 25) -> Path:
    """A camera pan over a real photo (scikit-image's astronaut), 1 px a frame, going back and
    forth every 10 s, so that flow and codecs see real texture and motion."""
    import cv2

    period = 10 * fps
    photo = load_photo("astronaut")
    scale = max((width + period + 8) / photo.shape[1], (height + 8) / photo.shape[0], 1.0)
    photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    pan = camera_pan(photo, period, (height, width), velocity=(1.0, 0.0)).frames

    def frames():
        for i in range(int(seconds * fps)):
            lap, t = divmod(i, period)
            yield pan[t if lap % 2 == 0 else period - 1 - t]

    return write_video(path, frames(), fps=fps, crf=18)


def model_only_fps(weights: Path, width: int, height: int, frames: int = 20, device: str = "cpu", batch: int = 1,
                   workers: int = 1, precision: str = "auto") -> float:
    """Frames a second of the generator alone, under ``run``'s autocast for ``precision``; with
    ``workers`` > 1, that many passes at once in threads with ``cores // workers`` torch threads
    each (what ``run`` does on the CPU)."""
    model, _ = load_generator(weights, device)
    if device != "cpu":
        model = model.to(memory_format=torch.channels_last)  # as run does on CUDA

    def autocast():  # per call: the autocast state belongs to the thread
        return autocast_for(torch.device(device), precision)

    x = torch.rand(batch, model.config.get("in_channels", 3), height, width, device=device) * 2 - 1
    if device != "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    kw = {}
    if model.flow_source != "none":
        # y_prev is an output: the RGB a residual output adds to (a gray input repeated, a guided
        # model's first 3 channels)
        scale = getattr(model, "scale", 1)  # a ×2 model's past output is twice the size
        y_prev = rgb_of(x) if scale == 1 else torch.zeros(batch, 3, scale * height, scale * width, device=device)
        kw = dict(x_prev=x, y_prev=y_prev, flow=torch.zeros(batch, 2, height, width, device=device),
                  valid=torch.ones(batch, 1, height, width, device=device), reset=torch.zeros(batch, dtype=torch.bool, device=device))
    if workers > 1:
        def one_pass(_):
            with torch.inference_mode(), autocast():
                model(x, **kw)

        with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=((os.cpu_count() or 1) // workers,)) as pool:
            list(pool.map(one_pass, range(2 * workers)))
            start = time.perf_counter()
            list(pool.map(one_pass, range(frames)))
        return frames * batch / (time.perf_counter() - start)
    with torch.inference_mode(), autocast():
        for _ in range(3):
            model(x, **kw)
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(frames):
            model(x, **kw)
        if device != "cpu":
            torch.cuda.synchronize()
    return frames * batch / (time.perf_counter() - start)


def best_model_fps(weights: Path, width: int, height: int, precision: str) -> dict:
    """Model-only fps on the CPU both ways: one pass on every core, and ``run``'s default
    workers (one pass a core); the better one is the model's speed."""
    workers = cpu_workers()
    out = {"model_fps_all_cores": model_only_fps(weights, width, height, frames=40, precision=precision)}
    out["model_fps_workers"] = (
        model_only_fps(weights, width, height, frames=40, workers=workers, precision=precision) if workers > 1 else 0.0
    )
    out["model_fps"] = max(out.values())
    return out


# Runs `run` and prints the process's own peak RSS (VmHWM) at exit.  getrusage/wait4 would
# also count the pages inherited from this (large) benchmark process before exec.
_RUN_AND_REPORT_PEAK = """
import atexit, re, runpy, sys
def peak():
    status = open("/proc/self/status").read()
    print("VmHWM_kB", re.search(r"VmHWM:\\s+(\\d+)", status).group(1), file=sys.stderr)
atexit.register(peak)
sys.argv = ["vid2vid_lite.run", *sys.argv[1:]]
from vid2vid_lite.run import cli
cli()
"""


def run_command(clip: Path, weights: Path, out: Path, *overrides: str, tree: Path = ROOT) -> tuple[float, float]:
    """``(end-to-end fps as `run` reports it, peak RSS in MiB)`` of one run of the code in
    ``tree`` (this checkout, or a baseline worktree)."""
    result = subprocess.run(
        [sys.executable, "-c", _RUN_AND_REPORT_PEAK, str(clip), f"weights={weights}", f"output={out}",
         "progress=false", "device=cpu", *overrides],
        capture_output=True, text=True, cwd=out.parent, env={**os.environ, "PYTHONPATH": str(tree)},
    )
    if result.returncode != 0:
        raise RuntimeError(f"run failed: {result.stderr}")
    fps = float(re.search(r"\(([\d.]+) fps\)", result.stdout).group(1))
    peak = int(re.search(r"VmHWM_kB (\d+)", result.stderr).group(1))
    return fps, peak / 1024


@contextmanager
def worktree(rev: str):
    """The code of git revision ``rev``, checked out into a temporary folder."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), rev], check=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False)


def code_version() -> str:
    """The short commit of this checkout, ``-dirty`` when tracked files differ from it."""
    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def demo_seconds(repeats: int) -> list[float]:
    """Wall-clock seconds of the no-argument demo, as a new user runs it (README step 2)."""
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "vid2vid_lite.run", f"demo_dir={tmp}/v2v_demo"], cwd=tmp, check=True,
                           capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            times.append(time.perf_counter() - start)
    return times


def cpu_benchmark(sizes: list[tuple[int, int]], repeats: int, precision: str, baseline: Path | None = None,
                  deflicker: bool = False, upscale: bool = False) -> dict:
    """Each repeat measures, back to back, both models' model-only and end-to-end fps at one
    size (and, with a ``baseline`` tree, that tree's end-to-end fps); the ratios are taken within
    a repeat (this machine's speed drifts by tens of percent over minutes) and their medians
    reported."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = models(tmp, deflicker, upscale)
        for width, height in sizes:
            size = f"{width}x{height}"
            clips = {s: make_clip(tmp / f"clip_{size}_{s}s.mp4", width, height, s) for s in (10, 60)}
            runs: dict[str, list[dict]] = {kind: [] for kind in weights}
            for _ in range(repeats):
                for kind, w in weights.items():
                    # model-only fps just before and just after the run, averaged: the run is
                    # compared with the machine's speed of that moment
                    guide = [f"guide={clips[10]}"] if kind == "deflicker" else []  # the clip stabilised against itself
                    before = best_model_fps(w, width, height, precision)
                    e2e, rss10 = run_command(clips[10], w, tmp / "out.mp4", f"precision={precision}", *guide)
                    after = best_model_fps(w, width, height, precision)
                    row = {k: (before[k] + after[k]) / 2 for k in before}
                    runs[kind].append({**row, "e2e_fps": e2e, "rss10_mib": rss10})
                    if baseline is not None and kind in ("framewise", "temporal"):
                        base_fps, base_rss = run_command(clips[10], w, tmp / "out.mp4", f"precision={precision}", tree=baseline)
                        runs[kind][-1].update(baseline_e2e_fps=base_fps, baseline_rss10_mib=base_rss,
                                              e2e_over_baseline=e2e / base_fps)
            for kind, w in weights.items():
                rows = runs[kind]
                r = {k: statistics.median(row[k] for row in rows) for k in rows[0]}
                r["e2e_over_model"] = statistics.median(row["e2e_fps"] / row["model_fps"] for row in rows)
                if baseline is not None and kind in ("framewise", "temporal"):
                    r["e2e_over_baseline_per_repeat"] = [row["e2e_over_baseline"] for row in rows]
                guide = [f"guide={clips[60]}"] if kind == "deflicker" else []
                r["rss60_mib"] = run_command(clips[60], w, tmp / "out.mp4", f"precision={precision}", *guide)[1]  # once
                r["rss60_over_rss10"] = r["rss60_mib"] / r["rss10_mib"]
                results[f"{kind} {size}"] = r
                print(f"{kind} {size}", {k: np.round(v, 3).tolist() for k, v in r.items()}, flush=True)
            ratios = [f["e2e_fps"] / t["e2e_fps"] for f, t in zip(runs["framewise"], runs["temporal"])]
            results[f"temporal/framewise e2e time {size}"] = statistics.median(ratios)
            print(f"temporal/framewise e2e time {size}", [round(r, 3) for r in ratios], flush=True)
            if deflicker:  # the deflicker target: at least as fast as the temporal restore model
                ratios = [t["e2e_fps"] / d["e2e_fps"] for t, d in zip(runs["temporal"], runs["deflicker"])]
                results[f"deflicker/temporal e2e time {size}"] = statistics.median(ratios)
                print(f"deflicker/temporal e2e time {size}", [round(r, 3) for r in ratios], flush=True)
            if upscale:  # the upscale2x target: at most twice the temporal restore model's time
                ratios = [t["e2e_fps"] / u["e2e_fps"] for t, u in zip(runs["temporal"], runs["upscale2x"])]
                results[f"upscale2x/temporal e2e time {size}"] = statistics.median(ratios)
                print(f"upscale2x/temporal e2e time {size}", [round(r, 3) for r in ratios], flush=True)
    return results


def cuda_benchmark(precision: str) -> dict:
    results = {"device": torch.cuda.get_device_name()}
    with tempfile.TemporaryDirectory() as tmp:
        weights = models(Path(tmp))
        for kind, w in weights.items():
            for width, height in ((512, 512), (1024, 512)):
                for batch in (1, 4, 16):
                    fps = model_only_fps(w, width, height, frames=30, device="cuda", batch=batch, precision=precision)
                    results[f"{kind} {width}x{height} batch {batch}"] = fps
                    print(kind, width, height, batch, round(fps, 1), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["256x256", "640x360"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cuda", action="store_true")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="run's precision option, also used for model-only (default: run's default)")
    parser.add_argument("--baseline", metavar="REV", help="also run `run` of this git revision, back to back, and report the ratio")
    parser.add_argument("--deflicker", action="store_true", help="also measure the deflicker model (its guide: the clip)")
    parser.add_argument("--upscale", action="store_true", help="also measure the temporal x2 model (output twice the size)")
    parser.add_argument("--demo", action="store_true", help="also time the no-argument demo (--repeats times)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the results as JSON here (default: docs/measurements/benchmark[-cuda]-DATE-COMMIT.json)")
    args = parser.parse_args()
    commit = code_version()  # at the start: the code that is measured
    keep_freed_memory()  # as `run` does: model-only and end-to-end run under the same allocator
    if args.cuda:
        results = cuda_benchmark(args.precision)
    else:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
        if args.baseline:
            with worktree(args.baseline) as tree:
                results = cpu_benchmark(sizes, args.repeats, args.precision, baseline=tree, deflicker=args.deflicker, upscale=args.upscale)
            results["_baseline"] = args.baseline
        else:
            results = cpu_benchmark(sizes, args.repeats, args.precision, deflicker=args.deflicker, upscale=args.upscale)
        if args.demo:
            times = demo_seconds(args.repeats)
            results["demo"] = {"seconds": statistics.median(times), "per_repeat": times}
            print("demo seconds", [round(t, 1) for t in times], flush=True)
    results["_machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    results["_date"] = str(date.today())
    results["_time"] = datetime.now(timezone.utc).isoformat(timespec="seconds")  # orders runs of one day
    results["_precision"] = resolve_precision(torch.device("cuda" if args.cuda else "cpu"), args.precision)
    results["_commit"] = commit
    results["_command"] = "python tools/benchmark.py " + " ".join(sys.argv[1:])
    kind = "cuda-" if args.cuda else ""  # docs_benchmarks.py finds GPU runs by this name
    out = args.out or ROOT / "docs" / "measurements" / f"benchmark-{kind}{results['_date']}-{commit}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out} (python tools/render_docs.py renders it)")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
