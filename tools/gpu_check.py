"""Check every CUDA path of vid2vid_lite and time it, in one run on a lent GPU.

    python tools/gpu_check.py --out REPORT.json [--work DIR] [--device cuda] [--quick]

Each check runs the real commands (``python -m vid2vid_lite.run`` / ``.train``) and reports
pass or fail with its numbers; a failing check does not stop the others.  The report goes to
``--out``; clips, outputs, runs and the commands' logs (``logs/``) to ``--work``.  Checks:

1. ``run`` frame-wise: batch 1 against batch 8 (autocast, channels_last, pinned copies): every
   frame within 2 grey levels; fps of each.
2. ``run`` temporal: 4 segments side by side against one (warm-up 8): frames within 4 grey levels
   (max abs diff per frame, median over frames; the CPU test states 2 in fp32), fps of each.
3. ``batch=auto`` picks a batch from free memory (> 1 on a GPU) and runs.
4. ``compile=true``: same frames as eager within 2 grey levels; fps.
5. ``train``: frame-wise then temporal (init_from) with AMP and channels_last, EMA, a resume;
   it/s of each.

``--device cpu`` runs the same checks on the CPU (slowly) to test this script itself.
tools/gpu_session.sh wraps it for the device machine (wheels, the CUDA benchmark, $OUT).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vid2vid_lite.io import read_video  # noqa: E402

from benchmark import make_clip  # noqa: E402  (tools/ is on sys.path when this runs as a script)


class Checks:
    """Runs commands, records each check's result in ``results``."""

    def __init__(self, work: Path, device: str) -> None:
        self.out, self.device = work, device
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.results: dict[str, dict] = {}

    def command(self, name: str, module: str, *args: str) -> str:
        """Run ``python -m module args`` and return its stdout; raise with the log on failure."""
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=ROOT)
        (self.logs / f"{name}.log").write_text(f"$ {module} {' '.join(args)}\n{result.stdout}\n{result.stderr}")
        if result.returncode != 0:
            raise RuntimeError(f"{module} exited {result.returncode}: {result.stderr.strip()[-400:]}")
        self.results.setdefault("_wall_s", {})[name] = round(time.perf_counter() - start, 1)
        return result.stdout

    def translate(self, name: str, clip: Path, weights: str, *overrides: str) -> tuple[np.ndarray, float]:
        """``(frames, fps)`` of one ``run``."""
        out = self.out / "videos" / f"{name}.mkv"
        out.parent.mkdir(exist_ok=True)
        stdout = self.command(name, "vid2vid_lite.run", str(clip), f"weights={weights}", f"output={out}",
                              f"device={self.device}", "progress=false", "crf=0", *overrides)
        fps = float(re.search(r"\(([\d.]+) fps\)", stdout).group(1))
        return read_video(out)[0], fps

    def check(self, name: str, fn) -> None:
        print(f"== {name}", flush=True)
        try:
            result = fn()
            result["pass"] = bool(result.get("pass", True))
        except Exception as err:  # a report, not a crash: the other checks still run
            result = {"pass": False, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-2000:]}
        self.results[name] = result
        print(json.dumps({k: v for k, v in result.items() if k != "traceback"}), flush=True)


def frame_differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Max absolute difference of each frame pair, in grey levels."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).reshape(len(a), -1).max(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the JSON report")
    parser.add_argument("--work", type=Path, default=Path("/tmp/v2v_gpu_check"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="small clips and few steps (to test this script)")
    args = parser.parse_args()
    c = Checks(args.work, args.device)
    import torch

    c.results["_torch"] = {"version": torch.__version__, "cuda": torch.cuda.is_available(),
                           "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
    size, seconds, steps = ((256, 128), 2, 6) if args.quick else ((1024, 512), 8, 300)
    clip = make_clip(args.work / "clip.mp4", *size, seconds)

    def framewise():
        one, fps1 = c.translate("fw_b1", clip, "restore-framewise", "batch=1")
        eight, fps8 = c.translate("fw_b8", clip, "restore-framewise", "batch=8")
        d = frame_differences(one, eight)
        return {"pass": d.max() <= 2, "max_diff": int(d.max()), "fps_batch1": fps1, "fps_batch8": fps8}

    def temporal():
        one, fps1 = c.translate("tm_b1", clip, "restore", "batch=1")
        four, fps4 = c.translate("tm_b4", clip, "restore", "batch=4", "warmup=8")
        d = frame_differences(one, four)
        return {"pass": np.median(d) <= 4, "median_max_diff": float(np.median(d)), "max_diff": int(d.max()),
                "fps_batch1": fps1, "fps_batch4": fps4}

    def auto_batch():
        frames, fps = c.translate("tm_auto", clip, "restore", "batch=auto")
        batch = re.search(r"fps\), \w+, batch (\d+)", (c.logs / "tm_auto.log").read_text())
        picked = int(batch.group(1)) if batch else 1
        return {"pass": picked > 1 or args.device == "cpu", "batch": picked, "frames": len(frames), "fps": fps}

    def compiled():
        eager, fps_e = c.translate("fw_eager", clip, "restore-framewise", "batch=4")
        comp, fps_c = c.translate("fw_compile", clip, "restore-framewise", "batch=4", "compile=true")
        d = frame_differences(eager, comp)
        return {"pass": d.max() <= 2, "max_diff": int(d.max()), "fps_eager": fps_e, "fps_compile": fps_c}

    def training():
        runs = args.work / "train"
        common = [f"data.train={clip}", "data.task=restore", f"device={args.device}", "model.ngf=16", "model.depth=5",
                  "data.crop=128", "data.num_workers=2", "train.ema=0.999", "train.progress=false",
                  "train.val_every=0", f"train.save_every={steps // 2}"]
        out = {}
        for name, extra in (("framewise", ["model=framewise", "train.batch_size=16"]),
                            ("temporal", ["model=temporal", f"model.init_from={runs / 'framewise'}",
                                          "data.clip_len=4", "train.batch_size=8"])):
            c.command(f"train_{name}", "vid2vid_lite.train", *common, *extra, f"train.steps={steps}",
                      f"hydra.run.dir={runs / name}")
            metrics = json.loads((runs / name / "metrics.json").read_text())
            out[f"{name}_it_per_s"] = metrics["it_per_s"]
            out[f"{name}_val_psnr"] = metrics["val"].get("psnr")
        # resume: two more steps on top of the frame-wise run
        c.command("train_resume", "vid2vid_lite.train", *common, "model=framewise", "train.batch_size=16",
                  f"train.steps={steps + 2}", "train.resume=true", f"hydra.run.dir={runs / 'framewise'}")
        resumed = json.loads((runs / "framewise" / "metrics.json").read_text())
        out["resumed_to_step"] = resumed["step"]
        out["pass"] = resumed["step"] == steps + 2
        return out

    for name, fn in (("run framewise batch 1 vs 8", framewise), ("run temporal 1 vs 4 segments", temporal),
                     ("run batch=auto", auto_batch), ("run compile=true", compiled), ("train AMP + resume", training)):
        c.check(name, fn)
    args.out.write_text(json.dumps(c.results, indent=2))
    failed = [k for k, v in c.results.items() if not k.startswith("_") and not v["pass"]]
    print("FAILED: " + ", ".join(failed) if failed else "all checks passed", flush=True)


if __name__ == "__main__":
    main()
