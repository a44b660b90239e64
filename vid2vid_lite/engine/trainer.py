"""The training loop behind ``python -m vid2vid_lite.train``.

One step (pix2pix's order: generate, update D, update G)::

    G over the clip: frame-wise (all B*T frames at once) or recurrent (previous output warped,
                     truncated backprop every ``train.tbptt`` frames)
    D step:  image D on (A, fake) vs (A, real) frames; D_T on K-frame windows of the clip
    G step:  L1 + GAN + feature matching (+ VGG) per frame; warp, mask and flow terms on frame
             pairs; temporal GAN on the clip
    EMA of G (optional), LR schedule: constant, then linear decay to 0

Around it: mixed precision on CUDA (bf16 where supported, else fp16 with loss scaling),
channels_last on CUDA, DistributedDataParallel under ``torchrun`` (gloo on CPU, nccl on CUDA;
rank 0 logs and saves), atomic checkpoints every ``train.save_every`` steps and on
SIGINT/SIGTERM, exact resume (weights, optimisers, schedulers, scalers, EMA, RNG and data
position), a tqdm bar, TensorBoard scalars and sample grids, and ``metrics.json``.

Checkpoints are read with ``torch.load(weights_only=True)`` (training state) or safetensors
(generator): loading one never runs code.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as tdist
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..checkpoint import load_generator, save_generator
from ..cli import pick_device
from ..datasets.clips import (
    Augment, ClipData, ClipDataset, ClipSampler, PrepareSettings, curriculum, discover, prepare_videos,
)
from ..datasets.tasks import Task
from ..errors import UserError
from ..flow import DISFlow
from ..image import image_to_tensor, signed_to_unit, tensor_to_image, to_float
from ..io.base import atomic_path
from ..losses import GANLoss, VGGPerceptualLoss, feature_matching_loss, flow_loss, mask_regularizer, warp_loss
from ..metrics import VideoMetrics, psnr
from ..nn import build_discriminator, build_generator, build_temporal_discriminator
from .precision import DTYPES, autocast_for, resolve_precision

log = logging.getLogger(__name__)

STATE_FORMAT = "vid2vid_lite/train/1"
#: Tasks whose input already is an image close to the target: a residual output trains faster.
RESIDUAL_TASKS = ("restore", "upscale2x", "colorize")
#: Test hook: send ourselves SIGTERM after this step (exercises the real signal path).
KILL_ENV = "V2V_KILL_AT_STEP"


# --------------------------------------------------------------------------- distributed


@dataclass
class DistInfo:
    """This process's place in the (possibly single-process) group."""

    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device_name: str) -> DistInfo:
    """Join the process group that ``torchrun`` describes (``WORLD_SIZE`` > 1), else run alone.

    gloo on CPU, nccl on CUDA; each process takes ``cuda:LOCAL_RANK``.  Under SLURM with several
    tasks and no torchrun (the submitit launcher), the variables come from SLURM's."""
    if "WORLD_SIZE" not in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        try:
            from submitit.helpers import TorchDistributedEnvironment

            TorchDistributedEnvironment().export()
        except ImportError:
            raise UserError("several SLURM tasks but no torchrun: install submitit (the launchers extra)") from None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_name)
    if world <= 1:
        return DistInfo(device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not tdist.is_initialized():
        # Long timeout: rank 0 may spend a while decoding videos and computing flows.
        tdist.init_process_group(backend, timeout=datetime.timedelta(hours=2))
    return DistInfo(device, rank, world, local_rank)


def barrier(dist: DistInfo) -> None:
    if dist.enabled:
        tdist.barrier()


def any_rank(flag: bool, dist: DistInfo) -> bool:
    """True on every rank when ``flag`` is True on any (so all ranks stop at the same step)."""
    if not dist.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=dist.device if dist.device.type == "cuda" else "cpu")
    tdist.all_reduce(value, op=tdist.ReduceOp.MAX)
    return bool(value.item())


def broadcast_object(obj, dist: DistInfo):
    if not dist.enabled:
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


# --------------------------------------------------------------------------- precision, seeds


@dataclass(frozen=True)
class Precision:
    name: str  # fp32, bf16 or fp16
    dtype: torch.dtype | None  # None: fp32
    scaler: bool  # fp16 on CUDA needs loss scaling


def training_precision(name: str, device: torch.device) -> Precision:
    """``auto``: bf16 on CUDA where supported, else fp16 (scaled); fp32 on the CPU (unlike
    ``run``, training keeps fp32 there: bf16 training on the CPU is not measured here).
    ``bf16`` also works on CPUs with AMX/AVX512-BF16."""
    try:
        name = resolve_precision(device, str(name), cpu_bf16=False)
    except ValueError:
        raise UserError(f"train.precision={name} is not known; use auto, fp32, bf16 or fp16") from None
    return Precision(name, DTYPES[name], name == "fp16" and device.type == "cuda")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every global RNG state, as plain types and tensors (``weights_only``-loadable)."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_tuples(state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _worker_init(worker_id: int) -> None:
    """DataLoader workers: the main process handles Ctrl-C / SIGTERM (and saves); workers keep
    going until it shuts them down.  Item randomness comes from item keys, not from here."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


# --------------------------------------------------------------------------- models


class ClipGenerator(nn.Module):
    """Run a generator over a clip: ``forward(x (B, T, C, H, W), flow, valid) -> dict``.

    Frame-wise generators see the B*T frames as one batch.  Temporal generators run frame
    after frame, feeding back their previous output (warped inside the model); the first frame
    of the clip starts a shot.  With ``tbptt > 0`` the fed-back output is detached every
    ``tbptt`` frames (truncated backpropagation through time).

    Returns ``out`` (B, T, 3, H, W) and, for temporal generators, ``mask`` (B, T, 1, H, W),
    ``flow`` (B, T, 2, H, W) and ``valid`` (B, T, 1, H, W) as used by the model.  One module so
    that DistributedDataParallel sees one forward per step.
    """

    def __init__(self, generator: nn.Module, tbptt: int = 0, channels_last: bool = False) -> None:
        super().__init__()
        self.generator = generator
        self.tbptt = int(tbptt or 0)
        self.channels_last = channels_last

    def _cl(self, x: torch.Tensor | None) -> torch.Tensor | None:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x is not None else x

    def forward(self, x: torch.Tensor, flow: torch.Tensor | None = None, valid: torch.Tensor | None = None) -> dict:
        b, t_len = x.shape[:2]
        g = self.generator
        if not getattr(g, "is_temporal", False):
            out = g(self._cl(x.flatten(0, 1))).unflatten(0, (b, t_len))
            return {"out": out, "mask": None, "flow": None, "valid": None}
        given = g.flow_source == "dis"
        if given and t_len > 1 and flow is None:
            raise ValueError("a flow=dis generator needs the clip's flow")
        results, y_prev = [], None
        for t in range(t_len):
            if t == 0:
                r = g(self._cl(x[:, 0]))
            else:
                r = g(
                    self._cl(x[:, t]), x_prev=self._cl(x[:, t - 1]), y_prev=y_prev,
                    flow=flow[:, t] if given else None, valid=valid[:, t] if given and valid is not None else None,
                )
            y_prev = r.out
            if self.tbptt and (t + 1) % self.tbptt == 0:
                y_prev = y_prev.detach()
            results.append(r)
        stack = lambda name: torch.stack([getattr(r, name) for r in results], dim=1)  # noqa: E731
        return {"out": stack("out"), "mask": stack("mask"), "flow": stack("flow"), "valid": stack("valid")}


class EMA:
    """Exponential moving average of a model's parameters (buffers are copied)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.lerp_(p.detach(), 1.0 - self.decay)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(0, 1)


def _split(pred, n: int):
    """Split every tensor of a discriminator output (nested lists) at batch index ``n``."""
    if isinstance(pred, torch.Tensor):
        return pred[:n], pred[n:]
    pairs = [_split(p, n) for p in pred]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def to_display(a: torch.Tensor, task: Task) -> torch.Tensor:
    """Model inputs (N, C, H, W) in [-1, 1] -> RGB (N, 3, H, W) to look at."""
    if a.shape[1] == 3:
        return a
    if a.shape[1] == 1:
        return a.expand(-1, 3, -1, -1)
    palette = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (a.shape[1], 3))).to(a)
    return palette[a.argmax(dim=1)].permute(0, 3, 1, 2)


# --------------------------------------------------------------------------- state files


def save_state(path: Path, state: dict) -> None:
    """``torch.save`` under a temporary name, then an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise UserError(f"cannot load training state {path}: {err}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise UserError(f"{path} is not a vid2vid_lite training state (latest.pt of a run)")
    return state


def _finite(value):
    """NaN / inf -> None, recursively, so that the file is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(path: Path, data: dict) -> None:
    """Write strict JSON (NaN as null) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_finite(data), indent=2, allow_nan=False))


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


# --------------------------------------------------------------------------- config helpers


def container(node) -> dict:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})


def build_task(data: DictConfig) -> Task:
    """The task ``data`` describes (``data.task``, ``label_nc``, ``edges``, ``restore``)."""
    return Task.from_spec({
        "name": str(data.task),
        "label_nc": int(data.get("label_nc") or 0),
        "edge_thresholds": (data.get("edges") or {}).get("thresholds", (100, 200)),
        "degradation": container(data.get("restore")),
    })


def model_configs(model: DictConfig, task: Task) -> tuple[dict, dict, dict | None, str | None]:
    """(generator, discriminator, temporal discriminator or None, init_from) configs."""
    g = container(model)
    d = g.pop("discriminator", {}) or {}
    dt = g.pop("temporal_discriminator", None)
    init_from = g.pop("init_from", None)
    if g.get("in_channels") in (None, "auto"):
        g["in_channels"] = task.in_channels
    elif int(g["in_channels"]) != task.in_channels:
        raise UserError(f"model.in_channels={g['in_channels']} but task {task.spec} feeds {task.in_channels} channels")
    if g.get("residual") == "auto":
        g["residual"] = task.name in RESIDUAL_TASKS
    d = {**d, "in_channels": task.in_channels, "out_channels": g.get("out_channels", 3)}
    if dt is not None:
        dt = {**dt, "in_channels": task.in_channels, "out_channels": 3}
    return g, d, dt, init_from


def linear_decay(steps: int, decay_start: float) -> Callable[[int], float]:
    """pix2pix's schedule: factor 1 for the first ``decay_start`` fraction of the steps, then
    linearly down to 0 at ``steps``."""
    start = int(round(steps * float(decay_start)))

    def factor(step: int) -> float:
        if step < start or steps <= start:
            return 1.0
        return max(0.0, (steps - step) / (steps - start))

    return factor


# --------------------------------------------------------------------------- the trainer


class Trainer:
    """Everything one training run holds.  ``Trainer(cfg, run_dir, dist).fit() -> metrics``."""

    def __init__(self, cfg: DictConfig, run_dir: Path, dist: DistInfo) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.dist = dist
        self.device = dist.device
        t = cfg.train
        self.steps = int(t.steps)
        if self.steps < 1:
            raise UserError(f"train.steps must be >= 1, got {self.steps}")
        self.batch_size = int(t.batch_size)
        if self.batch_size < dist.world or self.batch_size % dist.world:
            raise UserError(f"train.batch_size={self.batch_size} (global) must be a multiple of the {dist.world} processes")
        self.local_batch = self.batch_size // dist.world
        self.precision = training_precision(t.precision, self.device)
        cl = str(t.channels_last)
        self.channels_last = self.device.type == "cuda" if cl == "auto" else cl in ("true", "True", "1")
        seed_everything(int(cfg.seed))

        # -- task and models
        self.task = build_task(cfg.data)
        g_cfg, d_cfg, dt_cfg, init_from = model_configs(cfg.model, self.task)
        try:
            self.G = build_generator(g_cfg)
            self.D = build_discriminator(d_cfg)
            self.temporal = bool(getattr(self.G, "is_temporal", False))
            lw = cfg.loss
            self.DT = build_temporal_discriminator(dt_cfg) if self.temporal and float(lw.temporal_gan) > 0 and dt_cfg else None
        except ValueError as err:
            raise UserError(f"model config: {err}") from None
        self.init_from = init_from
        self.loss_w = {k: float(lw.get(k, 0.0) or 0.0) for k in ("l1", "gan", "fm", "warp", "flow", "mask", "temporal_gan", "vgg")}
        # A discriminator that no loss uses is kept (checkpoints keep one layout) but never
        # trained, which saves its forward and backward passes: the image D without a GAN or
        # feature-matching term, both without D_T as well (L1-only runs).
        self.image_adversarial = bool(self.loss_w["gan"] or self.loss_w["fm"])
        self.adversarial = self.image_adversarial or self.DT is not None
        try:
            self.gan = GANLoss(str(lw.gan_mode))
        except ValueError as err:
            raise UserError(f"loss.gan_mode: {err}") from None
        self.vgg = VGGPerceptualLoss(lw.get("vgg_weights")) if self.loss_w["vgg"] > 0 else None

        # -- clips
        self.clip_len = self._clip_len(cfg.data.clip_len)
        cur = cfg.data.get("curriculum") or {}
        self.clip_len_at = curriculum(self.clip_len, cur.get("start"), cur.get("double_every"))
        if self.temporal and self.clip_len_at(0) < 2:
            raise UserError("a temporal model trains on clips of >= 2 frames: raise data.clip_len / data.curriculum.start")
        if self.DT is not None and self.clip_len < self.DT.required_frames and self.dist.is_main:
            log.warning(
                "clips of %d frames are too short for the temporal discriminator (%d needed): loss.temporal_gan is unused",
                self.clip_len, self.DT.required_frames,
            )
        self.flow_side = self._flow_side()
        self.data = self._build_data()

        # -- optimisation
        self.opt_g = instantiate(cfg.optim.generator, _convert_="all")(self.G.parameters())
        d_params = list(self.D.parameters()) + (list(self.DT.parameters()) if self.DT else [])
        self.opt_d = instantiate(cfg.optim.discriminator, _convert_="all")(d_params)
        decay = linear_decay(self.steps, cfg.optim.decay_start)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, decay)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, decay)
        self.scaler_g = torch.amp.GradScaler("cuda", enabled=self.precision.scaler)
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=self.precision.scaler)
        self.ema = EMA(self.G, float(t.ema)) if float(t.ema or 0) > 0 else None
        self.step = 0
        self.resumed_from: Path | None = None
        self._load_or_init()

        # -- devices and wrappers
        for m in (self.G, self.D, self.DT, self.vgg, self.ema.model if self.ema else None):
            if m is not None:
                m.to(self.device)
                if self.channels_last:
                    m.to(memory_format=torch.channels_last)
        self.runner: nn.Module = ClipGenerator(self.G, int(t.tbptt or 0), self.channels_last)
        self.D_step: nn.Module = self.D
        self.DT_step: nn.Module | None = self.DT
        if dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # No buffers to sync: instance/group norms keep no running statistics.
            self.runner = DDP(self.runner, device_ids=ids)
            self.D_step = DDP(self.D, device_ids=ids)
            if self.DT is not None:
                self.DT_step = DDP(self.DT, device_ids=ids)
        self._optimizer_to(self.opt_g)
        self._optimizer_to(self.opt_d)
        self.writer = None
        self.last_losses: dict[str, float] = {}

    # -- setup pieces ------------------------------------------------------------------
    def _clip_len(self, value) -> int:
        if str(value) == "auto":
            if self.temporal:
                return 6
            return 2 if self.loss_w["warp"] > 0 else 1
        value = int(value)
        if value < 1:
            raise UserError(f"data.clip_len must be >= 1, got {value}")
        return value

    def _flow_side(self) -> str | None:
        """Which frames the cached flow is computed on (None: no flow needed)."""
        if self.temporal:
            return "source" if self.G.flow_source == "dis" else "target"
        return "source" if self.loss_w["warp"] > 0 and self.clip_len > 1 else None

    def _build_data(self) -> ClipData:
        d = self.cfg.data
        cache = Path(os.path.expanduser(str(d.cache_dir)))
        preset = str(self.G.config.get("dis_preset", d.measure_dis_preset)) if self.flow_side == "source" else str(d.measure_dis_preset)
        settings = PrepareSettings(
            task=self.task, cache_dir=cache, load_size=d.get("load_size"), scene_cut=bool(d.scene_cut),
            seed=int(d.seed), flow=self.flow_side, dis_preset=preset, on_bad_file=str(d.on_bad_file),
        )
        if settings.on_bad_file not in ("skip", "fail"):
            raise UserError(f"data.on_bad_file={settings.on_bad_file}; use skip or fail")
        pairs = discover(d.train, d.get("target"), self.task)
        # Rank 0 decodes and computes flows; the others then find everything in the cache.
        if self.dist.is_main:
            videos = prepare_videos(pairs, settings)
        barrier(self.dist)
        if not self.dist.is_main:
            videos = prepare_videos(pairs, settings)
        crop = d.get("crop")
        if crop is not None:
            crop = (int(crop), int(crop)) if isinstance(crop, (int, float, str)) else tuple(int(c) for c in crop)
        augment = Augment(crop=crop, scale=tuple(float(s) for s in d.scale), flip=bool(d.flip))
        val_frames = int(d.val_frames or 0)
        dataset, holdout = None, False
        first = videos[0]
        if val_frames and first.length > val_frames:
            try:
                dataset = ClipDataset(videos, self.task, self.clip_len, augment, int(d.seed), {0: first.length - val_frames})
                holdout = True
            except UserError:
                dataset = None  # too little data to hold frames out: validate on training frames
        if dataset is None:
            dataset = ClipDataset(videos, self.task, self.clip_len, augment, int(d.seed))
        validation = None
        if val_frames:
            count = min(val_frames, first.length)
            validation = dataset.validation_frames(0, first.length - count, count, d.get("val_size"))
            validation["holdout"] = holdout
        if self.dist.is_main:
            frames = sum(v.length for v in videos)
            log.info(
                "data: %d video(s), %d frames, %d clips of %d frames, task %s, flow %s",
                len(videos), frames, len(dataset), self.clip_len, self.task.spec, self.flow_side or "none",
            )
        return ClipData(dataset, self.task, validation, videos)

    def _loader(self) -> DataLoader:
        d = self.cfg.data
        workers = int(d.num_workers)
        sampler = ClipSampler(
            len(self.data.dataset), self.local_batch, self.dist.world, self.dist.rank, int(self.cfg.seed),
            start_step=self.step, clip_len_at=self.clip_len_at,
        )
        return DataLoader(
            self.data.dataset, batch_size=self.local_batch, sampler=sampler, num_workers=workers,
            pin_memory=self.device.type == "cuda", worker_init_fn=_worker_init, persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(int(self.cfg.seed)),
            # Explicit: inside a joblib (loky) sweep job the default context is loky's, which
            # cannot start plain multiprocessing workers.
            multiprocessing_context=(
                None if workers == 0 else "fork" if sys.platform.startswith("linux") else "spawn"
            ),
        )

    def _optimizer_to(self, opt: torch.optim.Optimizer) -> None:
        for state in opt.state.values():
            for k, v in state.items():
                if isinstance(v, torch.Tensor) and k != "step":
                    state[k] = v.to(self.device)

    # -- checkpoints ---------------------------------------------------------------------
    def _resume_path(self) -> Path | None:
        resume = self.cfg.train.resume
        if resume in (None, False) or str(resume).lower() in ("false", "none", "null", ""):
            return None
        if resume is True or str(resume).lower() == "true":
            path = self.ckpt_dir / "latest.pt"
            if not path.is_file():
                if self.dist.is_main:
                    log.info("train.resume=true: nothing to resume in %s, starting afresh", self.run_dir)
                return None
            return path
        path = Path(os.path.expanduser(str(resume)))
        if path.is_dir():
            path = path / "checkpoints" / "latest.pt"
        if not path.is_file():
            raise UserError(f"train.resume={resume}: no training state found ({path})")
        return path

    def _load_or_init(self) -> None:
        path = self._resume_path()
        if path is None:
            if self.init_from:
                self._init_from_framewise(str(self.init_from))
            return
        state = load_state(path)
        if state["config"]["generator"] != self.G.config:
            raise UserError(
                f"{path} holds a different generator ({state['config']['generator']}) than this run's "
                f"model config ({self.G.config}); resume with the same model settings"
            )
        try:
            self.G.load_state_dict(state["generator_train"])
            self.D.load_state_dict(state["discriminator"])
            if self.DT is not None:
                self.DT.load_state_dict(state["temporal_discriminator"])
            self.opt_g.load_state_dict(state["optim_g"])
            self.opt_d.load_state_dict(state["optim_d"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise UserError(f"{path} does not fit this run's models or losses: {err}") from None
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        self.scaler_g.load_state_dict(state["scaler_g"])
        self.scaler_d.load_state_dict(state["scaler_d"])
        if self.ema is not None:
            if "ema" in state:
                self.ema.model.load_state_dict(state["ema"])
            else:
                self.ema.model.load_state_dict(state["generator_train"])
        set_rng_state(state["rng"])
        self.step = int(state["step"])
        self.resumed_from = path
        if self.dist.is_main:
            log.info("resumed from %s at step %d", path, self.step)

    def _init_from_framewise(self, spec: str) -> None:
        if not self.temporal:
            raise UserError("model.init_from initialises a temporal model from a frame-wise one; use model=temporal")
        framewise, config = load_generator(spec)
        if getattr(framewise, "is_temporal", False):
            raise UserError(f"model.init_from={spec} is a temporal checkpoint; give a frame-wise one")
        report = self.G.init_from_framewise(framewise)
        if self.dist.is_main:
            log.info("initialised from frame-wise %s: %s", spec, report)

    def checkpoint_config(self) -> dict:
        d = self.cfg.data
        return {
            "generator": self.G.config,
            "task": self.task.spec,
            "task_spec": self.task.to_spec(),
            "meta": {
                "step": self.step, "steps": self.steps, "ema": self.ema is not None,
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
        infer = self.ema.model if self.ema is not None else self.G
        config = self.checkpoint_config()
        state = {
            "format": STATE_FORMAT,
            "step": self.step,
            "config": config,
            "generator": infer.state_dict(),
            "generator_train": self.G.state_dict(),
            "discriminator": self.D.state_dict(),
            "optim_g": self.opt_g.state_dict(),
            "optim_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "rng": rng_state(),
        }
        if self.DT is not None:
            state["temporal_discriminator"] = self.DT.state_dict()
        if self.ema is not None:
            state["ema"] = self.ema.model.state_dict()
        latest = self.ckpt_dir / "latest.pt"
        save_state(latest, state)
        save_generator(self.ckpt_dir / "latest.safetensors", infer, config)
        keep = int(self.cfg.train.keep_every or 0)
        if keep and self.step % keep == 0:
            kept = self.ckpt_dir / f"step_{self.step:06d}.pt"
            kept.unlink(missing_ok=True)
            try:
                os.link(latest, kept)  # latest.pt is replaced by rename later: the link keeps this one
            except OSError:
                save_state(kept, state)

    # -- one step ------------------------------------------------------------------------
    def _autocast(self):
        return autocast_for(self.device, self.precision.name)

    def _batch(self, batch: dict) -> dict:
        nb = self.device.type == "cuda"
        out = {"x": to_float(batch["a"].to(self.device, non_blocking=nb)), "y": to_float(batch["b"].to(self.device, non_blocking=nb))}
        for k in ("flow", "flow_fwd", "valid"):
            if k in batch:
                out[k] = batch[k].to(self.device, non_blocking=nb)
        return out

    def _d_losses(self, b: dict, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        x, y = b["x"], b["y"]
        losses: dict[str, torch.Tensor] = {}
        if self.image_adversarial:
            pred = self.D_step(torch.cat([_flat(fake), _flat(y)]), torch.cat([_flat(x), _flat(x)]))
            p_fake, p_real = _split(pred, x.shape[0] * x.shape[1])
            losses = {"d_fake": self.gan(p_fake, False), "d_real": self.gan(p_real, True)}
        if self._use_dt(x):
            flows, fwd = torch.cat([b["flow"], b["flow"]]), torch.cat([b["flow_fwd"], b["flow_fwd"]])
            pred_t = self.DT_step(torch.cat([fake, y]), torch.cat([x, x]), flows, fwd)
            pt_fake, pt_real = _split(pred_t, x.shape[0])
            losses["dt_fake"] = self.gan(pt_fake, False)
            losses["dt_real"] = self.gan(pt_real, True)
        return losses

    def _use_dt(self, x: torch.Tensor) -> bool:
        return self.DT is not None and x.shape[1] >= self.DT.required_frames

    def _g_losses(self, b: dict, gen: dict) -> dict[str, torch.Tensor]:
        w = self.loss_w
        x, y, fake = b["x"], b["y"], gen["out"]
        losses: dict[str, torch.Tensor] = {}
        if w["l1"]:
            losses["l1"] = F.l1_loss(fake.float(), y)
        if w["gan"] or w["fm"]:
            pred_fake = self.D(_flat(fake), _flat(x))  # the bare module: no DDP sync for D here
            if w["gan"]:
                losses["gan"] = self.gan(pred_fake, True, for_discriminator=False)
            if w["fm"]:
                with torch.no_grad():
                    pred_real = self.D(_flat(y), _flat(x))
                losses["fm"] = feature_matching_loss(pred_fake, pred_real)
        if self.vgg is not None:
            losses["vgg"] = self.vgg(_flat(fake).float(), _flat(y))
        if fake.shape[1] > 1:
            later = slice(1, None)
            if w["warp"] and "flow" in b:
                losses["warp"] = warp_loss(
                    _flat(fake[:, later]).float(), _flat(fake[:, :-1]).float(), _flat(b["flow"][:, later]), _flat(b["valid"][:, later])
                )
            if w["mask"] and gen["mask"] is not None:
                losses["mask"] = mask_regularizer(_flat(gen["mask"][:, later]).float(), _flat(gen["valid"][:, later]).float())
            if w["flow"] and self.temporal and self.G.flow_source == "learned":
                losses["flow"] = flow_loss(_flat(gen["flow"][:, later]).float(), _flat(b["flow"][:, later]), _flat(b["valid"][:, later]))
        if w["temporal_gan"] and self._use_dt(x):
            pred_t = self.DT(fake, x, b["flow"], b["flow_fwd"])
            losses["temporal_gan"] = self.gan(pred_t, True, for_discriminator=False)
        return losses

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        b = self._batch(batch)
        with self._autocast():
            gen = self.runner(b["x"], b.get("flow"), b.get("valid"))
        fake = gen["out"]

        # D: fake (detached) vs real; skipped when no loss uses a discriminator (L1-only runs)
        d_losses: dict[str, torch.Tensor] = {}
        if self.adversarial:
            self.opt_d.zero_grad(set_to_none=True)
            with self._autocast():
                d_losses = self._d_losses(b, fake.detach())
            weights = {"d": 1.0, "dt": self.loss_w["temporal_gan"]}
            terms = [0.5 * w * (d_losses[f"{k}_fake"] + d_losses[f"{k}_real"]) for k, w in weights.items() if f"{k}_fake" in d_losses]
            if terms:  # none when only D_T is trained and the clip is shorter than it needs
                loss_d = sum(terms)
                self.scaler_d.scale(loss_d).backward()
                self.scaler_d.step(self.opt_d)
                self.scaler_d.update()
            self.sched_d.step()

        # G: everything else, against the updated D
        self.opt_g.zero_grad(set_to_none=True)
        with self._autocast():
            g_losses = self._g_losses(b, gen)
        loss_g = sum(self.loss_w[k] * v.float() for k, v in g_losses.items())
        self.scaler_g.scale(loss_g).backward()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        self.sched_g.step()
        if self.ema is not None:
            self.ema.update(self.G)

        logs = {f"g_{k}": v.detach().float() for k, v in g_losses.items()}
        logs.update({k: v.detach().float() for k, v in d_losses.items()})
        logs["g_total"] = loss_g.detach()
        if d_losses:
            logs["d_total"] = loss_d.detach().float()
        self._last = (b, fake.detach())
        return logs

    # -- validation, images --------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Per-frame quality and temporal stability of the (EMA) generator on the held-out
        frames (whole frames, centre-cropped to ``data.val_size``), run like inference:
        recurrent with DIS flow on the inputs and resets at cuts."""
        v = self.data.validation
        if v is None:
            return {}
        model = self.ema.model if self.ema is not None else self.G
        was_training = model.training
        model.eval()
        a = image_to_tensor(v["a"], device=self.device)
        outputs = []
        with self._autocast():
            if getattr(model, "is_temporal", False):
                dis = DISFlow(str(model.config.get("dis_preset", "fast")))
                y_prev = None
                for t in range(len(a)):
                    cut = t in v["cuts"]
                    flow = valid = None
                    if not cut and model.flow_source == "dis":
                        flow, valid = (
                            z.to(self.device)
                            for z in dis.backward_with_validity(self.task.flow_view(v["a"][t]), self.task.flow_view(v["a"][t - 1]))
                        )
                    r = model(
                        a[t : t + 1], x_prev=None if t == 0 else a[t - 1 : t], y_prev=None if cut else y_prev,
                        flow=flow, valid=valid, reset=torch.tensor([cut], device=self.device),
                    )
                    y_prev = r.out.float()
                    outputs.append(y_prev)
            else:
                outputs = [model(a[i : i + 8]).float() for i in range(0, len(a), 8)]
        model.train(was_training)
        out = tensor_to_image(torch.cat(outputs))
        rows = []
        bounds = list(v["cuts"]) + [len(out)]
        for s, e in zip(bounds[:-1], bounds[1:]):  # temporal metrics within shots only
            vm = VideoMetrics(dis=DISFlow("fast"), vmaf=False)
            for o, r in zip(out[s:e], v["b"][s:e]):
                vm.update(o, r)
            rows += vm.rows()
        summary = {}
        for name in ("psnr", "ssim", "ewarp", "ewarp_ref", "tof", "flicker"):
            values = [r[name] for r in rows if not math.isnan(r[name])]
            summary[name] = float(np.mean(values)) if values else math.nan
        if v["a"].shape[-1] == 3:  # how far the input itself is from the target (restore etc.)
            summary["psnr_input"] = float(psnr(v["a"], v["b"]).mean())
        summary["frames"] = len(out)
        summary["held_out"] = bool(v["holdout"])
        return summary

    def _log_images(self) -> None:
        b, fake = self._last
        x, y = b["x"][0].float(), b["y"][0].float()  # (T, C, H, W)
        rows = [to_display(x, self.task), fake[0].float(), y]
        grid = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)  # (3, 3H, T*W)
        self.writer.add_image("samples/input_output_target", signed_to_unit(grid).cpu(), self.step)

    # -- the loop --------------------------------------------------------------------------
    def fit(self) -> dict:
        t = self.cfg.train
        main = self.dist.is_main
        if main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step or None)
        loader = self._loader()
        batches = iter(loader)
        log_every, save_every = int(t.log_every), int(t.save_every or 0)
        keep_every = int(t.keep_every or 0)
        image_every, val_every = int(t.image_every or 0), int(t.val_every or 0)
        kill_at = int(os.environ.get(KILL_ENV, "0") or 0)
        sums: dict[str, torch.Tensor] = {}
        count, start_step, start_time = 0, self.step, time.perf_counter()
        bar = tqdm(
            total=self.steps, initial=self.step, unit="it", dynamic_ncols=True, disable=not (main and t.progress),
            desc="train",
        )
        stopped: int | None = None
        with StopRequest() as stop:
            while self.step < self.steps:
                try:
                    batch = next(batches)
                except (RuntimeError, StopIteration):
                    if stop.signum is None:
                        raise
                    stopped = stop.signum  # a worker died with the signal: save what we have
                    break
                logs = self.train_step(batch)
                self.step += 1
                bar.update(1)
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
                if self.step % log_every == 0 or self.step == self.steps:
                    self.last_losses = self._mean_losses(sums, count)
                    sums, count = {}, 0
                    if main:
                        for k, v in self.last_losses.items():
                            self.writer.add_scalar(f"loss/{k}", v, self.step)
                        self.writer.add_scalar("lr/g", self.sched_g.get_last_lr()[0], self.step)
                        self.writer.add_scalar("data/clip_len", self.clip_len_at(self.step - 1), self.step)
                        bar.set_postfix({k: f"{self.last_losses[k]:.3g}" for k in ("g_l1", "g_total", "d_total") if k in self.last_losses})
                if main and image_every and self.step % image_every == 0:
                    self._log_images()
                if main and val_every and self.step % val_every == 0 and self.step < self.steps:
                    for k, v in self.validate().items():
                        if isinstance(v, float) and not math.isnan(v):
                            self.writer.add_scalar(f"val/{k}", v, self.step)
                if any(every and self.step % every == 0 for every in (save_every, keep_every)):
                    self.save()  # keep_every need not be a multiple of save_every
                if kill_at and self.step == kill_at:
                    os.kill(os.getpid(), signal.SIGTERM)
                if any_rank(stop.signum is not None, self.dist):
                    stopped = stop.signum or signal.SIGTERM
                    break
        bar.close()
        elapsed = time.perf_counter() - start_time
        if count:
            self.last_losses = self._mean_losses(sums, count)
        self.save()
        metrics = self._metrics(elapsed, self.step - start_step, interrupted=stopped is not None)
        if main:
            if self.writer is not None:
                for k, v in metrics.get("val", {}).items():
                    if isinstance(v, float) and not math.isnan(v):
                        self.writer.add_scalar(f"val/{k}", v, self.step)
                self.writer.close()
            write_json(self.run_dir / "metrics.json", metrics)
        barrier(self.dist)
        if stopped is not None:
            if main:
                print(
                    f"stopped by {signal.Signals(stopped).name} at step {self.step}; checkpoint saved. "
                    f"Continue with: python -m vid2vid_lite.train ... train.resume={self.run_dir}",
                    file=sys.stderr,
                )
            raise Stopped(128 + int(stopped))
        return metrics

    def _mean_losses(self, sums: dict[str, torch.Tensor], count: int) -> dict[str, float]:
        """Mean of each logged loss over the steps since the last log, over all ranks."""
        keys = sorted(sums)
        if not keys:
            return {}
        values = torch.stack([torch.as_tensor(sums[k], dtype=torch.float32) for k in keys]) / count
        if self.dist.enabled:
            values = values.to(self.device if self.device.type == "cuda" else "cpu")
            tdist.all_reduce(values)
            values /= self.dist.world
        return dict(zip(keys, values.tolist()))

    def parameter_digest(self) -> str:
        """SHA-1 of every G, D (and D_T) parameter: equal on all DDP ranks when they are in sync."""
        digest = hashlib.sha1()
        for model in (self.G, self.D, self.DT):
            if model is not None:
                for name, p in model.state_dict().items():
                    digest.update(name.encode())
                    digest.update(p.detach().float().cpu().numpy().tobytes())
        return digest.hexdigest()

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
            digests = [None] * self.dist.world
            tdist.all_gather_object(digests, self.parameter_digest())
            metrics["rank_parameter_sha1"] = digests
        if self.dist.is_main and not interrupted:
            metrics["val"] = self.validate()
        try:
            from hydra.core.hydra_config import HydraConfig

            metrics["overrides"] = list(HydraConfig.get().overrides.task)
        except ValueError:  # not under Hydra
            metrics["overrides"] = []
        return metrics


# --------------------------------------------------------------------------- entry point


def _shared_run_dir(run_dir: Path, dist: DistInfo) -> Path:
    """All ranks use rank 0's run directory (Hydra's ``${now:...}`` may differ by a second
    between processes); a rank's own, now unused, Hydra folder is removed."""
    shared = Path(broadcast_object(str(run_dir), dist))
    if shared != run_dir and run_dir.is_dir():
        leftovers = {p.name for p in run_dir.iterdir()}
        if leftovers <= {".hydra", "train.log"}:
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
    return shared


def train(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train as ``cfg`` says, writing into ``run_dir``; returns the metrics (also in
    ``run_dir/metrics.json``).  Raises :class:`Stopped` after a signal-triggered save."""
    dist = init_distributed(str(cfg.device))
    try:
        run_dir = _shared_run_dir(Path(run_dir), dist)
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
        if dist.enabled and tdist.is_initialized():
            tdist.destroy_process_group()
