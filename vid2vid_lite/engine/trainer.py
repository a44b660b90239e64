"""The training loop behind ``python -m vid2vid_lite.train``.

Its parts (BasicSR's split of the model from the loop):

- :mod:`.gan`: the networks, the loss table, the optimisers and one training step;
- :mod:`.train_data`: the clips (cached frames and flows), the validation frames and the loader;
- :mod:`.distributed`: DistributedDataParallel under ``torchrun`` (gloo on CPU, nccl on CUDA;
  rank 0 logs and saves);
- :mod:`vid2vid_lite.checkpoint`: both checkpoint formats (the generator for ``run``, the whole
  training state for ``train.resume``).

This module runs the steps: a tqdm bar, TensorBoard scalars and sample grids, validation run
like inference, atomic checkpoints every ``train.save_every`` steps and on SIGINT/SIGTERM,
exact resume (weights, optimisers, schedulers, scalers, EMA, RNG and data position) and
``metrics.json``.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ..checkpoint import load_state, resume_path, save_training, set_rng_state
from ..datasets.clips import curriculum
from ..datasets.tasks import Task, lanczos
from ..errors import UserError
from ..flow import DISFlow
from ..image import image_to_tensor, signed_to_unit, tensor_to_image, to_display
from ..io.base import write_json
from ..metrics import VideoMetrics, psnr
from .config import build_task, channels_last, seed_everything, training_precision
from .distributed import (
    DistInfo, any_rank, barrier, close_distributed, gather_objects, init_distributed, mean_over_ranks,
    parameter_digest, shared_run_dir,
)
from .gan import VideoGAN
from .recurrent import Recurrence, input_flow
from .train_data import build_clip_data, clip_length, flow_side, make_loader

log = logging.getLogger(__name__)

VAL_METRICS = ("psnr", "ssim", "ewarp", "ewarp_ref", "tof", "flicker")


class StopRequest:
    """Turn SIGINT / SIGTERM into a request to save and stop after the current step.

    A second Ctrl-C stops at once (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("received %s: saving a checkpoint after this step", signal.Signals(signum).name)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Stopped(Exception):
    """Training stopped on a signal, after saving (carries the exit status)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Trainer:
    """Everything one training run holds.  ``Trainer(cfg, run_dir, dist).fit() -> metrics``."""

    def __init__(self, cfg: DictConfig, run_dir: Path, dist: DistInfo) -> None:
        self.cfg, self.dist, self.device = cfg, dist, dist.device
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.steps, self.local_batch = self._steps_and_batch(cfg.train)
        self.precision = training_precision(cfg.train.precision, self.device)
        seed_everything(int(cfg.seed))
        self.task = build_task(cfg.data)
        self.model = VideoGAN(cfg, self.task, self.precision)
        self.G = self.model.G
        self.clip_len, self.clip_len_at = self._clip_lengths(cfg.data)
        warp = self.model.loss_w["warp"] > 0
        self.flow_side = flow_side(self.G, warp, self.clip_len)
        self.data = build_clip_data(cfg.data, self.task, self.clip_len, self.flow_side, self._dis_preset(), dist)
        self.step = 0
        self.resumed_from: Path | None = None
        self._load_or_init()
        self.model.to_device(self.device, channels_last(cfg.train.channels_last, self.device), dist)
        self.writer = None
        self.last_losses: dict[str, float] = {}

    # -- setup pieces ------------------------------------------------------------------
    def _steps_and_batch(self, t: DictConfig) -> tuple[int, int]:
        """``train.steps`` and this rank's share of the global ``train.batch_size``."""
        steps, batch, world = int(t.steps), int(t.batch_size), self.dist.world
        if steps < 1:
            raise UserError(f"train.steps must be >= 1, got {steps}")
        if batch < world or batch % world:
            raise UserError(f"train.batch_size={batch} (global) must be a multiple of the {world} processes")
        return steps, batch // world

    def _clip_lengths(self, d: DictConfig):
        """``data.clip_len`` and the curriculum's clip length at each step."""
        temporal, dt = self.model.temporal, self.model.DT
        clip_len = clip_length(d.clip_len, temporal, self.model.loss_w["warp"] > 0)
        cur = d.get("curriculum") or {}
        at = curriculum(clip_len, cur.get("start"), cur.get("double_every"))
        if temporal and at(0) < 2:
            raise UserError("a temporal model trains on clips of >= 2 frames: raise data.clip_len / data.curriculum.start")
        if dt is not None and clip_len < dt.required_frames and self.dist.is_main:
            log.warning(
                "clips of %d frames are too short for the temporal discriminator (%d needed): loss.temporal_gan is unused",
                clip_len, dt.required_frames,
            )
        return clip_len, at

    def _dis_preset(self) -> str:
        """The cached flows' DIS preset: the generator's own for the flow it is fed (as at
        inference), else ``data.measure_dis_preset``."""
        measure = self.cfg.data.measure_dis_preset
        return str(self.G.config.get("dis_preset", measure)) if self.flow_side == "source" else str(measure)

    def _load_or_init(self) -> None:
        """Resume (``train.resume``) or initialise from a frame-wise run (``model.init_from``)."""
        path = resume_path(self.cfg.train.resume, self.run_dir, report=self.dist.is_main)
        if path is None:
            if self.model.init_from:
                report = self.model.init_from_framewise()
                if self.dist.is_main:
                    log.info("initialised from frame-wise %s: %s", self.model.init_from, report)
            return
        state = load_state(path)
        self.model.load_state_dict(state, path)
        set_rng_state(state["rng"])
        self.step = int(state["step"])
        self.resumed_from = path
        if self.dist.is_main:
            log.info("resumed from %s at step %d", path, self.step)

    # -- checkpoints ---------------------------------------------------------------------
    def checkpoint_config(self) -> dict:
        d = self.cfg.data
        return {
            "generator": self.G.config,
            "task": self.task.spec,
            "task_spec": self.task.to_spec(),
            "meta": {
                "step": self.step, "steps": self.steps, "ema": self.model.ema is not None,
                "data": str(d.train), "target": None if d.get("target") is None else str(d.target),
                "clip_len": self.clip_len, "flow": self.flow_side, "run_dir": str(self.run_dir),
            },
        }

    def save(self) -> None:
        """Write ``latest.pt`` (full state) and ``latest.safetensors`` (the generator ``run``
        loads: the EMA when enabled), atomically; every ``keep_every`` steps also keep
        ``step_NNNNNN.pt``.  Rank 0 only."""
        if not self.dist.is_main:
            return
        keep = int(self.cfg.train.keep_every or 0)
        state = {"step": self.step, "config": self.checkpoint_config(), **self.model.state_dict()}
        save_training(self.ckpt_dir, state, self.model.inference_model, keep=bool(keep and self.step % keep == 0))

    # -- validation, images ------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Per-frame quality and temporal stability of the (EMA) generator on the held-out
        frames (whole frames, centre-cropped to ``data.val_size``), run like inference:
        recurrent with DIS flow on the inputs and resets at cuts."""
        v = self.data.validation
        if v is None:
            return {}
        model = self.model.inference_model
        was_training = model.training
        model.eval()
        with self.model.autocast():
            translated = translate_frames(model, self.task, v["a"], v["cuts"], self.device)
        model.train(was_training)
        out = tensor_to_image(translated)
        rows = []
        bounds = list(v["cuts"]) + [len(out)]
        for s, e in zip(bounds[:-1], bounds[1:]):  # temporal metrics within shots only
            vm = VideoMetrics(dis=DISFlow(str(self.cfg.data.measure_dis_preset)), vmaf=False)  # as evaluate measures
            for o, r in zip(out[s:e], v["b"][s:e]):
                vm.update(o, r)
            rows += vm.rows()
        summary = {}
        for name in VAL_METRICS:
            values = [r[name] for r in rows if not math.isnan(r[name])]
            summary[name] = float(np.mean(values)) if values else math.nan
        if self.task.scale != 1:  # the classical baseline: Lanczos of the input
            summary["psnr_input"] = float(psnr(np.stack([lanczos(f, self.task.scale) for f in v["a"]]), v["b"]).mean())
        elif v["a"].shape[-1] == 3 or self.task.guided:  # how far the input itself is from the target (restore etc.)
            summary["psnr_input"] = float(psnr(v["a"][..., :3], v["b"]).mean())
        summary["frames"] = len(out)
        summary["held_out"] = bool(v["holdout"])
        return summary

    def _log_images(self) -> None:
        b, fake = self.model.last
        x, y = b["x"][0].float(), b["y"][0].float()  # (T, C, H, W)
        if x.shape[-2:] != y.shape[-2:]:  # a ×2 model's input, enlarged to be seen beside it
            x = F.interpolate(x, size=y.shape[-2:], mode="nearest")
        rows = [to_display(x), fake[0].float(), y]
        grid = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)  # (3, 3H, T*W)
        self.writer.add_image("samples/input_output_target", signed_to_unit(grid).cpu(), self.step)

    # -- the loop ------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train to ``train.steps`` (or a signal); returns the metrics (also in metrics.json).
        Raises :class:`Stopped` after a signal-triggered save."""
        t = self.cfg.train
        if self.dist.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step or None)
        start_step, start_time = self.step, time.perf_counter()
        bar = tqdm(
            total=self.steps, initial=self.step, unit="it", dynamic_ncols=True,
            disable=not (self.dist.is_main and t.progress), desc="train",
        )
        stopped = self._loop(bar)
        bar.close()
        elapsed = time.perf_counter() - start_time
        if self._count:
            self.last_losses = self._mean_losses()
        self.save()
        metrics = self._metrics(elapsed, self.step - start_step, interrupted=stopped is not None)
        self._report(metrics)
        barrier(self.dist)
        if stopped is not None:
            if self.dist.is_main:
                print(
                    f"stopped by {signal.Signals(stopped).name} at step {self.step}; checkpoint saved. "
                    f"Continue with: python -m vid2vid_lite.train ... train.resume={self.run_dir}",
                    file=sys.stderr,
                )
            raise Stopped(128 + int(stopped))
        return metrics

    def _loop(self, bar: tqdm) -> int | None:
        """Steps until ``train.steps``; returns the signal that stopped them early, if any."""
        batches = iter(make_loader(self.data, self.cfg, self.local_batch, self.dist, self.step, self.clip_len_at))
        self._sums: dict[str, torch.Tensor] = {}  # logged losses since the last log line
        self._count = 0
        with StopRequest() as stop:
            while self.step < self.steps:
                try:
                    batch = next(batches)
                except (RuntimeError, StopIteration):
                    if stop.signum is None:
                        raise
                    return stop.signum  # a worker died with the signal: save what we have
                logs = self.model.train_step(batch)
                self.step += 1
                bar.update(1)
                for k, v in logs.items():
                    self._sums[k] = self._sums.get(k, 0.0) + v
                self._count += 1
                self._after_step(bar)
                if any_rank(stop.signum is not None, self.dist):
                    return stop.signum or signal.SIGTERM
        return None

    def _after_step(self, bar: tqdm) -> None:
        """Logs, sample grids, validation and checkpoints that fall on this step."""
        t, main = self.cfg.train, self.dist.is_main
        if self.step % int(t.log_every) == 0 or self.step == self.steps:
            self.last_losses = self._mean_losses()
            if main:
                self._log_losses(bar)
        image_every, val_every = int(t.image_every or 0), int(t.val_every or 0)
        if main and image_every and self.step % image_every == 0:
            self._log_images()
        if main and val_every and self.step % val_every == 0 and self.step < self.steps:
            self._log_validation(self.validate())
        if any(every and self.step % every == 0 for every in (int(t.save_every or 0), int(t.keep_every or 0))):
            self.save()  # keep_every need not be a multiple of save_every

    def _log_losses(self, bar: tqdm) -> None:
        for k, v in self.last_losses.items():
            self.writer.add_scalar(f"loss/{k}", v, self.step)
        self.writer.add_scalar("lr/g", self.model.sched_g.get_last_lr()[0], self.step)
        self.writer.add_scalar("data/clip_len", self.clip_len_at(self.step - 1), self.step)
        bar.set_postfix({k: f"{self.last_losses[k]:.3g}" for k in ("g_l1", "g_total", "d_total") if k in self.last_losses})

    def _log_validation(self, values: dict) -> None:
        for k, v in values.items():
            if isinstance(v, float) and not math.isnan(v):
                self.writer.add_scalar(f"val/{k}", v, self.step)

    def _mean_losses(self) -> dict[str, float]:
        """Mean of each logged loss over the steps since the last log, over all ranks; starts
        the next window."""
        sums, count = self._sums, self._count
        self._sums, self._count = {}, 0
        keys = sorted(sums)
        if not keys:
            return {}
        values = torch.stack([torch.as_tensor(sums[k], dtype=torch.float32) for k in keys]) / count
        return dict(zip(keys, mean_over_ranks(values, self.dist).tolist()))

    def _metrics(self, elapsed: float, steps_run: int, interrupted: bool) -> dict:
        metrics = {
            "step": self.step,
            "steps": self.steps,
            "task": self.task.spec,
            "model": self.G.config["name"],
            "interrupted": interrupted,
            "losses": self.last_losses,
            "time_s": elapsed,
            "it_per_s": steps_run / elapsed if elapsed > 0 else None,
            "world_size": self.dist.world,
            "resumed_from": None if self.resumed_from is None else str(self.resumed_from),
        }
        if self.dist.enabled:  # one digest per rank: all equal unless DDP lost sync
            metrics["rank_parameter_sha1"] = gather_objects(parameter_digest(*self.model.networks), self.dist)
        if self.dist.is_main and not interrupted:
            metrics["val"] = self.validate()
        try:
            from hydra.core.hydra_config import HydraConfig

            metrics["overrides"] = list(HydraConfig.get().overrides.task)
        except ValueError:  # not under Hydra
            metrics["overrides"] = []
        return metrics

    def _report(self, metrics: dict) -> None:
        """The final validation to TensorBoard and ``metrics.json`` (rank 0)."""
        if not self.dist.is_main:
            return
        if self.writer is not None:
            self._log_validation(metrics.get("val", {}))
            self.writer.close()
        write_json(self.run_dir / "metrics.json", metrics)


def translate_frames(model: torch.nn.Module, task: Task, frames: np.ndarray, cuts, device: torch.device) -> torch.Tensor:
    """Model inputs ``(N, h, w, C)`` uint8 through ``model`` as ``run`` would (recurrent, DIS
    flow on the inputs, resets at ``cuts``, which include 0): ``(N, 3, h, w)`` float."""
    a = image_to_tensor(frames, device=device)
    if not getattr(model, "is_temporal", False):
        return torch.cat([model(a[i : i + 8]).float() for i in range(0, len(a), 8)])
    dis = DISFlow(str(model.config.get("dis_preset", "fast"))) if model.flow_source == "dis" else None
    recurrence = Recurrence(model, feedback=lambda out, x: out.float())
    outputs = []
    for t in range(len(a)):
        cut = t in cuts
        flow = valid = None
        if dis is not None and not cut:
            flow, valid = (z.to(device) for z in input_flow(task, dis, frames[t], frames[t - 1]))
        outputs.append(recurrence.step(a[t : t + 1], reset=[cut], flow=flow, valid=valid).out.float())
    return torch.cat(outputs)


def train(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train as ``cfg`` says, writing into ``run_dir``; returns the metrics (also in
    ``run_dir/metrics.json``).  Raises :class:`Stopped` after a signal-triggered save."""
    dist = init_distributed(str(cfg.device))
    try:
        run_dir = shared_run_dir(Path(run_dir), dist)
        if not dist.is_main:  # rank 0 reports (bad files, progress) once for all
            logging.getLogger().setLevel(logging.ERROR)
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        trainer = Trainer(cfg, run_dir, dist)
        if dist.is_main:
            n_g = sum(p.numel() for p in trainer.G.parameters())
            log.info(
                "training %s (%.2f M parameters) on %s x%d, %s, %d steps from step %d -> %s",
                trainer.G.config["name"], n_g / 1e6, dist.device, dist.world,
                trainer.precision.dtype or "fp32", trainer.steps, trainer.step, run_dir,
            )
        return trainer.fit()
    finally:
        close_distributed(dist)
