"""Paired clip datasets for training: T consecutive frames of (A, B), with cached flow.

Pipeline (the videos come prepared by datasets/prepare.py)::

    ClipDataset[(index, epoch, T)]             in DataLoader workers:
        T frames of one shot -> one random scale / crop / flip shared by A, B and the flow
        -> per-clip tasks make (A, B) from the augmented clip (colorize / edges / upscale2x /
        deflicker) -> tensors
    ClipSampler                                infinite, resumable, DistributedSampler-partitioned

Clips never span a scene cut: every clip lies inside one shot.  The augmentation randomness of
an item comes from its key ``(index, epoch, T)`` and the data seed, not from worker state, so a
run is reproducible whatever the number of workers and can resume at any step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from ..errors import UserError
from ..image import hwc_to_chw
from .prepare import PreparedVideo
from .tasks import Task, one_hot


# --------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class CropParams:
    """One clip's geometry: window ``(x0, y0)`` of ``size / scale`` source pixels, then flip."""

    x0: float
    y0: float
    scale: float
    size: tuple[int, int]  # output (h, w)
    flip: bool


@dataclass(frozen=True)
class Augment:
    """One random scale, crop and horizontal flip, shared by every frame of a clip and its flow.

    The output pixel ``u`` samples source pixel ``(x0, y0) + u / scale``, so a flow vector
    ``f`` (source pixels) becomes ``scale * f`` and a horizontal flip negates its x part.

    Args:
        crop: output ``(h, w)``; None keeps the whole frame (no scaling).
        scale: range of the random scale factor (1 = native pixels).  It is raised where needed
            so that the window fits in the frame.
        flip: random horizontal flips.
    """

    crop: tuple[int, int] | None = (256, 256)
    scale: tuple[float, float] = (1.0, 1.0)
    flip: bool = True

    def draw(self, rng: np.random.Generator, height: int, width: int) -> CropParams:
        flip = bool(self.flip and rng.random() < 0.5)
        if self.crop is None:
            return CropParams(0.0, 0.0, 1.0, (height, width), flip)
        ch, cw = self.crop
        lo, hi = float(self.scale[0]), float(self.scale[1])
        scale = float(rng.uniform(lo, hi)) if hi > lo else lo
        scale = max(scale, ch / height, cw / width)  # the window must fit in the frame
        wh, ww = ch / scale, cw / scale
        if scale == 1.0:  # integer window: plain slicing, exact
            x0, y0 = float(rng.integers(0, width - cw + 1)), float(rng.integers(0, height - ch + 1))
        else:
            x0, y0 = float(rng.uniform(0, max(0.0, width - ww))), float(rng.uniform(0, max(0.0, height - wh)))
        return CropParams(x0, y0, scale, (ch, cw), flip)

    @staticmethod
    def apply(frames: np.ndarray, p: CropParams, nearest: bool = False) -> np.ndarray:
        """``(T, H, W, C)`` -> ``(T, h, w, C)`` with the clip's window, scale and flip."""
        h, w = p.size
        if p.scale == 1.0 and float(p.x0).is_integer() and float(p.y0).is_integer():
            x0, y0 = int(p.x0), int(p.y0)
            out = np.array(frames[:, y0 : y0 + h, x0 : x0 + w])  # a writable copy, not a view of the cache
        else:
            matrix = np.array([[p.scale, 0.0, -p.scale * p.x0], [0.0, p.scale, -p.scale * p.y0]])
            mode = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
            out = np.stack([
                _as_hwc(cv2.warpAffine(np.asarray(f), matrix, (w, h), flags=mode, borderMode=cv2.BORDER_REFLECT101), f)
                for f in frames
            ])
        return np.ascontiguousarray(out[:, :, ::-1]) if p.flip else np.ascontiguousarray(out)

    @classmethod
    def apply_flow(cls, flows: np.ndarray, p: CropParams) -> np.ndarray:
        """Flow ``(T, H, W, 2)`` -> ``(T, h, w, 2)`` float32: resampled, times the scale, and
        with x negated when flipped."""
        out = cls.apply(np.asarray(flows, dtype=np.float32), p) * np.float32(p.scale)
        if p.flip:
            out[..., 0] *= -1.0
        return out


def _as_hwc(image: np.ndarray, like: np.ndarray) -> np.ndarray:
    return image[..., None] if image.ndim == 2 and like.ndim == 3 else image


# --------------------------------------------------------------------------- dataset


class ClipDataset(Dataset):
    """Clips of T consecutive frames inside one shot, as tensors.

    Item keys are ``(index, epoch, T)`` from :class:`ClipSampler` (a plain int ``index`` means
    epoch 0 and ``T = clip_len``).  ``index`` picks an anchor: a start frame from which
    ``clip_len`` frames stay in one shot; shorter clips (curriculum) take a random sub-window.

    An item is a dict of tensors:

    - ``a``: (T, C_in, h, w) uint8 model input (label maps one-hot as 0/255);
    - ``b``: (T, 3, h, w) uint8 target;
    - with flows: ``flow`` (T, 2, h, w) float32 backward t -> t-1 (zero at t = 0), ``flow_fwd``
      (T, 2, h, w) forward t -> t+1 (zero at the last frame), ``valid`` (T, 1, h, w) float32.

    Args:
        videos: prepared videos.
        task: the task (per-clip tasks make A here, after the augmentation).
        clip_len: the largest T (anchors leave room for it).
        augment: the shared crop / scale / flip.
        seed: the data seed.
        holdout: video index -> first frame held out for validation (excluded from clips).
    """

    def __init__(
        self,
        videos: Sequence[PreparedVideo],
        task: Task,
        clip_len: int,
        augment: Augment,
        seed: int = 0,
        holdout: dict[int, int] | None = None,
    ) -> None:
        self.videos = list(videos)
        self.task = task
        self.clip_len = int(clip_len)
        self.augment = augment
        self.seed = int(seed)
        self.holdout = dict(holdout or {})
        self.with_flow = all(v.flow is not None for v in self.videos)
        if augment.crop is None and len({(v.height, v.width) for v in self.videos}) > 1:
            raise UserError("the training videos differ in size: set data.crop=SIZE (clips are batched)")
        anchors = []
        for vi, video in enumerate(self.videos):
            end_all = self.holdout.get(vi, video.length)
            for start, end in video.shots():
                end = min(end, end_all)
                anchors.extend((vi, s) for s in range(start, end - self.clip_len + 1))
        if not anchors:
            longest = max(max(e - s for s, e in v.shots()) for v in self.videos)
            raise UserError(
                f"no shot has data.clip_len={self.clip_len} frames (the longest has {longest}); "
                "lower data.clip_len or add longer videos"
            )
        self.anchors = np.asarray(anchors, dtype=np.int64)
        self._arrays: list[dict[str, np.ndarray]] | None = None

    def __len__(self) -> int:
        return len(self.anchors)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_arrays"] = None  # memory maps are reopened in each worker, never pickled
        return state

    def arrays(self, video: int) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = [v.open() for v in self.videos]
        return self._arrays[video]

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        index, epoch, length = (int(key), 0, self.clip_len) if np.isscalar(key) else map(int, key)
        if not 1 <= length <= self.clip_len:
            raise ValueError(f"clip length {length} outside 1..{self.clip_len}")
        rng = np.random.default_rng([self.seed, epoch, index, length])
        vi, start = (int(v) for v in self.anchors[index])
        start += int(rng.integers(0, self.clip_len - length + 1))
        frames = slice(start, start + length)
        video = self.videos[vi]
        arrays = self.arrays(vi)
        p = self.augment.draw(rng, video.height, video.width)
        b = self.augment.apply(arrays["b"][frames], p)
        if "a" in arrays:
            a = self.augment.apply(arrays["a"][frames], p, nearest=self.task.name == "labels")
            if self.task.name == "labels":
                a = one_hot(a, self.task.label_nc)
        else:
            a, b = self.task.make_pair(b, rng)
        item = {"a": hwc_to_chw(a), "b": hwc_to_chw(b), "index": torch.tensor(index)}
        if self.with_flow:
            bwd = self.augment.apply_flow(arrays["bwd"][frames], p)
            fwd = self.augment.apply_flow(arrays["fwd"][frames], p)
            valid = self.augment.apply(arrays["valid"][frames][..., None], p, nearest=True).astype(np.float32)
            bwd[0], valid[0], fwd[-1] = 0.0, 0.0, 0.0  # the clip's own first / last frame
            item.update(flow=hwc_to_chw(bwd), flow_fwd=hwc_to_chw(fwd), valid=hwc_to_chw(valid))
        return item

    # -- validation --------------------------------------------------------------------
    def validation_frames(self, video: int, start: int, count: int, max_size: int | None = 256) -> dict:
        """Whole frames ``[start, start + count)`` of a video, centre-cropped to at most
        ``max_size`` on each side: ``a`` (N, h, w, C) uint8 model input, ``b`` (N, h, w, 3),
        ``cuts`` (frame indices relative to ``start`` that begin a shot, 0 included)."""
        v = self.videos[video]
        arrays = self.arrays(video)
        h = min(v.height, max_size or v.height)
        w = min(v.width, max_size or v.width)
        y0, x0 = (v.height - h) // 2, (v.width - w) // 2
        window = (slice(start, start + count), slice(y0, y0 + h), slice(x0, x0 + w))
        b = np.array(arrays["b"][window])
        if "a" in arrays:
            a = np.array(arrays["a"][window])
            if self.task.name == "labels":
                a = one_hot(a, self.task.label_nc)
        else:
            a, b = self.task.make_pair(b, np.random.default_rng([self.seed, video, start]))
        cuts = sorted({0} | {c - start for c in v.cuts if start < c < start + count})
        return {"a": a, "b": b, "cuts": cuts}


# --------------------------------------------------------------------------- sampling


def curriculum(clip_len: int, start: int | None = None, double_every: int | None = None) -> Callable[[int], int]:
    """Clip length at a step: ``min(clip_len, start * 2 ** (step // double_every))`` (vid2vid
    doubles the number of frames it trains on); constant ``clip_len`` without a curriculum."""
    if not start or not double_every:
        return lambda step: clip_len
    start, every = int(start), int(double_every)
    return lambda step: min(clip_len, start * 2 ** (step // every))


class ClipSampler(Sampler):
    """An endless, resumable stream of item keys ``(index, epoch, T)`` for one process.

    Each epoch is a :class:`torch.utils.data.DistributedSampler` pass (shuffled with
    ``seed + epoch``, split between ``world`` processes); epochs follow each other without a
    gap, and ``batch_size`` consecutive keys make one step.  So the global batch of a step is
    the same whatever the number of processes (for a fixed global batch size), and starting at
    ``start_step`` continues a run exactly where it stopped.

    Args:
        num_items: dataset length.
        batch_size: per-process batch size.
        world, rank: the process group.
        seed: shuffling seed.
        start_step: first step to produce (for resuming).
        clip_len_at: step -> T (curriculum).
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        world: int = 1,
        rank: int = 0,
        seed: int = 0,
        start_step: int = 0,
        clip_len_at: Callable[[int], int] = lambda step: 1,
    ) -> None:
        self.num_items = num_items
        self.batch_size = batch_size
        self.world, self.rank = world, rank
        self.seed = seed
        self.start_step = start_step
        self.clip_len_at = clip_len_at
        self.per_epoch = math.ceil(num_items / world)  # what DistributedSampler gives one rank

    def _epoch(self, epoch: int) -> list[int]:
        sampler = DistributedSampler(
            range(self.num_items), num_replicas=self.world, rank=self.rank, shuffle=True, seed=self.seed
        )
        sampler.set_epoch(epoch)
        return list(sampler)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        position = self.start_step * self.batch_size
        epoch, offset = divmod(position, self.per_epoch)
        while True:
            order = self._epoch(epoch)
            for i in range(offset, self.per_epoch):
                step = position // self.batch_size
                yield order[i], epoch, self.clip_len_at(step)
                position += 1
            epoch, offset = epoch + 1, 0


@dataclass
class ClipData:
    """What the trainer needs from the data side."""

    dataset: ClipDataset
    task: Task
    validation: dict | None = None  # validation_frames() output plus "holdout": bool
    videos: list[PreparedVideo] = field(default_factory=list)
