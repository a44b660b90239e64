"""A training run's data: clip length, which flows to cache, the prepared clips and the loader."""

from __future__ import annotations

import logging
import os
import random
import signal
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from ..datasets.clips import Augment, ClipData, ClipDataset, ClipSampler
from ..datasets.prepare import PrepareSettings, discover, prepare_videos
from ..datasets.tasks import Task
from ..errors import UserError
from .distributed import DistInfo, barrier

log = logging.getLogger(__name__)


def clip_length(value, temporal: bool, warp_loss: bool) -> int:
    """``data.clip_len``; ``auto``: 6 frames for a temporal model, else 2 with a warp loss, 1
    without."""
    if str(value) == "auto":
        if temporal:
            return 6
        return 2 if warp_loss else 1
    value = int(value)
    if value < 1:
        raise UserError(f"data.clip_len must be >= 1, got {value}")
    return value


def flow_side(generator, warp_loss: bool, clip_len: int) -> str | None:
    """Which frames the cached flow is computed on: ``source`` (the model inputs: what a
    ``flow=dis`` generator is fed, or a frame-wise warp loss), ``target`` (a learned-flow
    generator's supervision), None (no flow needed)."""
    if getattr(generator, "is_temporal", False):
        return "source" if generator.flow_source == "dis" else "target"
    return "source" if warp_loss and clip_len > 1 else None


def build_clip_data(
    d: DictConfig, task: Task, clip_len: int, flow: str | None, dis_preset: str, dist: DistInfo
) -> ClipData:
    """Prepare every video of ``data.train`` (rank 0 decodes and computes the flows, the others
    then find them in the cache) and hold out the validation frames."""
    settings = PrepareSettings(
        task=task, cache_dir=Path(os.path.expanduser(str(d.cache_dir))), load_size=d.get("load_size"),
        scene_cut=bool(d.scene_cut), seed=int(d.seed), flow=flow, dis_preset=dis_preset, on_bad_file=str(d.on_bad_file),
    )
    if settings.on_bad_file not in ("skip", "fail"):
        raise UserError(f"data.on_bad_file={settings.on_bad_file}; use skip or fail")
    pairs = discover(d.train, d.get("target"), task)
    if dist.is_main:
        videos = prepare_videos(pairs, settings)
    barrier(dist)
    if not dist.is_main:
        videos = prepare_videos(pairs, settings)
    dataset, holdout = _datasets(d, task, clip_len, videos)
    validation = None
    val_frames, first = int(d.val_frames or 0), videos[0]
    if val_frames:
        count = min(val_frames, first.length)
        validation = dataset.validation_frames(0, first.length - count, count, d.get("val_size"))
        validation["holdout"] = holdout
    if dist.is_main:
        log.info(
            "data: %d video(s), %d frames, %d clips of %d frames, task %s, flow %s",
            len(videos), sum(v.length for v in videos), len(dataset), clip_len, task.spec, flow or "none",
        )
    return ClipData(dataset, task, validation, videos)


def _datasets(d: DictConfig, task: Task, clip_len: int, videos: list) -> tuple[ClipDataset, bool]:
    """The clip dataset, without the first video's last ``data.val_frames`` frames where it can
    spare them (then True: validation is on held-out frames)."""
    crop = d.get("crop")
    if crop is not None:
        crop = (int(crop), int(crop)) if isinstance(crop, (int, float, str)) else tuple(int(c) for c in crop)
    augment = Augment(crop=crop, scale=tuple(float(s) for s in d.scale), flip=bool(d.flip))
    val_frames, first = int(d.val_frames or 0), videos[0]
    if val_frames and first.length > val_frames:
        try:
            return ClipDataset(videos, task, clip_len, augment, int(d.seed), {0: first.length - val_frames}), True
        except UserError:
            pass  # too little data to hold frames out: validate on training frames
    return ClipDataset(videos, task, clip_len, augment, int(d.seed)), False


def make_loader(data: ClipData, cfg: DictConfig, local_batch: int, dist: DistInfo, start_step: int, clip_len_at) -> DataLoader:
    """An endless, resumable loader from ``start_step`` (this rank's share of every batch)."""
    workers = int(cfg.data.num_workers)
    sampler = ClipSampler(
        len(data.dataset), local_batch, dist.world, dist.rank, int(cfg.seed), start_step=start_step,
        clip_len_at=clip_len_at,
    )
    return DataLoader(
        data.dataset, batch_size=local_batch, sampler=sampler, num_workers=workers,
        pin_memory=dist.device.type == "cuda", worker_init_fn=_worker_init, persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(int(cfg.seed)),
        # Explicit: inside a joblib (loky) sweep job the default context is loky's, which
        # cannot start plain multiprocessing workers.
        multiprocessing_context=(
            None if workers == 0 else "fork" if sys.platform.startswith("linux") else "spawn"
        ),
    )


def _worker_init(worker_id: int) -> None:
    """DataLoader workers: the main process handles Ctrl-C / SIGTERM (and saves); workers keep
    going until it shuts them down.  Item randomness comes from item keys, not from here."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
