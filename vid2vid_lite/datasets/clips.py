"""Paired clip datasets for training: T consecutive frames of (A, B), with cached flow.

Pipeline::

    discover(data.train, data.target)          video files / frame folders -> VideoPair list
    prepare_videos(...)                        once per video, cached on disk by content:
        decode (+ resize to load_size) -> B frames, scene cuts
        A frames: given (paired / labels), x264-degraded (restore), or none (made per clip)
        flows (DIS) when the model needs them
    ClipDataset[(index, epoch, T)]             in DataLoader workers:
        T frames of one shot -> one random scale / crop / flip shared by A, B and the flow
        -> A from the augmented B for colorize / edges / upscale2x -> tensors
    ClipSampler                                infinite, resumable, DistributedSampler-partitioned

Data layouts ``data.train`` accepts:

- a video file, or a folder of frames (one sequence);
- a folder of videos and/or sequence folders (sorted naturally; hidden entries skipped);
- for ``paired``: the same layout again in ``data.target`` (B side), paired by sorted order;
  or vid2vid's layout, ``data.train=ROOT`` with ``ROOT/train_A/<seq>`` and ``ROOT/train_B/<seq>``.

Clips never span a scene cut: cuts are detected once per video (on B) and every clip lies
inside one shot.  The augmentation randomness of an item comes from its key
``(index, epoch, T)`` and the data seed, not from worker state, so a run is reproducible
whatever the number of workers and can resume at any step.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from ..errors import UserError
from ..image import hwc_to_chw, processing_size
from ..io import READABLE_VIDEO_SUFFIXES, list_images, open_source
from ..io.formats import natural_key
from ..scene import SceneCutDetector
from .flow_cache import (
    CacheEntry, FlowFiles, cached_flows, content_hash, open_raw, read_meta, settings_key, write_meta, write_raw,
)
from .tasks import Task, one_hot

log = logging.getLogger(__name__)

FLOW_SIDES = ("source", "target")


# --------------------------------------------------------------------------- discovery


@dataclass(frozen=True)
class VideoPair:
    """One training sequence: its B side (``target``) and, for paired data, its A side."""

    target: Path
    source: Path | None = None

    @property
    def name(self) -> str:
        return self.target.name


def _is_frame_folder(path: Path) -> bool:
    return path.is_dir() and bool(list_images(path))


def list_sequences(root: Path) -> list[Path]:
    """The sequences ``root`` holds: itself (a video file or a frame folder), or its video files
    and frame folders in natural order."""
    if not root.exists():
        raise UserError(f"training data not found: {root}")
    if root.is_file() or _is_frame_folder(root):
        return [root]
    entries = sorted((p for p in root.iterdir() if not p.name.startswith(".")), key=lambda p: natural_key(p.name))
    found = [p for p in entries if (p.is_file() and p.suffix.lower() in READABLE_VIDEO_SUFFIXES) or _is_frame_folder(p)]
    if not found:
        raise UserError(
            f"{root} holds no videos ({', '.join(READABLE_VIDEO_SUFFIXES)}) and no folders of frames"
        )
    return found


def discover(train: str | Path | None, target: str | Path | None, task: Task) -> list[VideoPair]:
    """Find the training sequences; paired data is matched by sorted order.

    Raises:
        UserError: missing paths, a paired task without a B side, or unequal sequence counts.
    """
    if not train:
        raise UserError("no training data: set data.train=PATH (a video, a frame folder or a folder of them)")
    train = Path(str(train)).expanduser()
    if not train.exists():
        raise UserError(f"training data not found: {train}")
    if target is None and (train / "train_A").is_dir() and (train / "train_B").is_dir():
        if not task.given_input:
            raise UserError(
                f"{train} has vid2vid's train_A/train_B layout: use data.task=paired (its B side is train_B)"
            )
        train, target = train / "train_A", train / "train_B"
    if not task.given_input:
        if target is not None:
            raise UserError(f"data.target is for data.task=paired; task {task.name} makes its own input")
        return [VideoPair(p) for p in list_sequences(train)]
    if target is None:
        raise UserError("data.task=paired needs data.target=PATH, the B side (same layout as data.train)")
    target = Path(str(target)).expanduser()
    sources, targets = list_sequences(train), list_sequences(target)
    if len(sources) != len(targets):
        raise UserError(
            f"data.train has {len(sources)} sequences but data.target has {len(targets)}; "
            "paired data must match one to one (sorted by name)"
        )
    return [VideoPair(b, a) for a, b in zip(sources, targets)]


# --------------------------------------------------------------------------- preparation


@dataclass
class PrepareSettings:
    """What decides a video's cached frames and flows (all of it goes into the cache keys)."""

    task: Task
    cache_dir: Path
    load_size: int | None = None  # short side after loading; None keeps the native size
    scene_cut: bool = True
    seed: int = 0  # restore: the degradation of each video is drawn from (seed, content)
    flow: str | None = None  # None, "source" (DIS on A) or "target" (DIS on B)
    dis_preset: str = "fast"  # of the flows
    on_bad_file: str = "skip"  # skip | fail


@dataclass
class PreparedVideo:
    """A video ready for training: memory-mapped frames, shots and (optionally) flows."""

    name: str
    folder: Path
    length: int
    height: int
    width: int
    a_channels: int  # 0: A is made per clip from B
    fps: float
    cuts: list[int]
    flow: FlowFiles | None = None

    def open(self) -> dict[str, np.ndarray]:
        """Read-only maps ``b`` (N, H, W, 3), optional ``a`` (N, H, W, C) and flows."""
        arrays = {"b": open_raw(self.folder / "b.u8", np.uint8, (self.length, self.height, self.width, 3))}
        if self.a_channels:
            arrays["a"] = open_raw(self.folder / "a.u8", np.uint8, (self.length, self.height, self.width, self.a_channels))
        if self.flow is not None:
            arrays["bwd"], arrays["fwd"], arrays["valid"] = self.flow.open()
        return arrays

    def shots(self) -> list[tuple[int, int]]:
        """``[start, end)`` frame ranges between scene cuts."""
        bounds = sorted(set(self.cuts) | {0}) + [self.length]
        return [(s, e) for s, e in zip(bounds[:-1], bounds[1:]) if e > s]


def _resized(image: np.ndarray, size: tuple[int, int] | None, nearest: bool = False) -> np.ndarray:
    """``image`` at ``size`` ``(h, w)`` (area for shrinking, cubic for enlarging, or nearest)."""
    if size is None or image.shape[:2] == size:
        return image
    h, w = size
    if nearest:
        mode = cv2.INTER_NEAREST
    else:
        mode = cv2.INTER_AREA if h < image.shape[0] else cv2.INTER_CUBIC
    out = cv2.resize(image, (w, h), interpolation=mode)
    return out[..., None] if image.ndim == 3 and out.ndim == 2 else out


def _build_frames(pair: VideoPair, s: PrepareSettings, folder: Path) -> None:
    """Decode a pair into ``folder``: ``b.u8``, ``a.u8`` (given or degraded A), ``meta.json``."""
    task = s.task
    detector = SceneCutDetector()
    cuts: list[int] = []
    with open_source(pair.target) as source:
        fps = float(source.info.fps or 25.0)
        size = processing_size(source.info.height, source.info.width, s.load_size) if s.load_size else None

        def frames() -> Iterator[np.ndarray]:
            for index, frame in enumerate(source):
                image = _resized(frame.image, size)
                if s.scene_cut and detector.is_cut(image) and index > 0:
                    cuts.append(index)
                yield image

        n, h, w, _ = write_raw(folder / "b.u8", frames(), np.uint8)
    meta: dict = {"length": n, "height": h, "width": w, "fps": fps, "cuts": cuts, "target": str(pair.target)}
    b = open_raw(folder / "b.u8", np.uint8, (n, h, w, 3))
    if task.per_video:
        seed = [int(s.seed), int(content_hash(pair.target)[:8], 16)]
        rng = np.random.default_rng(seed)
        shape = write_raw(folder / "a.u8", task.degrade((np.asarray(f) for f in b), rng, fps=fps), np.uint8)
        meta["a_channels"] = 3
        if shape[0] != n:
            raise UserError(f"{pair.target}: the degraded video has {shape[0]} frames, not {n}")
    elif task.given_input:
        assert pair.source is not None
        labels = task.name == "labels"

        def given() -> Iterator[np.ndarray]:
            with open_source(pair.source) as source:
                for frame in source:
                    image = frame.image[..., :1] if labels else frame.image
                    if labels and int(image.max(initial=0)) >= task.label_nc:
                        raise UserError(
                            f"{pair.source} frame {frame.index} holds class {int(image.max())} but "
                            f"data.label_nc={task.label_nc}; raise data.label_nc"
                        )
                    yield _resized(image, (h, w), nearest=labels)

        shape = write_raw(folder / "a.u8", given(), np.uint8)
        if shape[0] != n:
            raise UserError(
                f"{pair.source} has {shape[0]} frames but its B side {pair.target} has {n}; "
                "paired sequences need the same frame count"
            )
        meta["a_channels"] = shape[-1]
        meta["source"] = str(pair.source)
    else:
        meta["a_channels"] = 0
    write_meta(folder, meta)


def prepare_video(pair: VideoPair, s: PrepareSettings) -> PreparedVideo:
    """Decode (or find in the cache) one video's frames and, when asked, its flows."""
    task = s.task
    key_settings = {
        "target": content_hash(pair.target),
        "source": content_hash(pair.source) if pair.source else None,
        "task": task.spec if not task.per_clip else "per-clip",
        "load_size": s.load_size,
        "scene_cut": s.scene_cut,
    }
    if task.per_video:
        key_settings.update(degradation=repr(task.degradation), seed=s.seed)
    key = settings_key(**key_settings)
    entry = CacheEntry(s.cache_dir / "frames" / key)
    if not entry.exists:
        log.info("preparing %s", pair.target)
        with entry as tmp:
            _build_frames(pair, s, tmp)
    meta = read_meta(entry.folder)
    video = PreparedVideo(
        name=pair.name, folder=entry.folder, length=meta["length"], height=meta["height"], width=meta["width"],
        a_channels=meta["a_channels"], fps=meta["fps"], cuts=meta["cuts"],
    )
    if s.flow is not None:
        video.flow = _prepare_flow(video, key, s)
    return video


def _prepare_flow(video: PreparedVideo, frames_key: str, s: PrepareSettings) -> FlowFiles:
    if s.flow not in FLOW_SIDES:
        raise ValueError(f"flow side must be one of {FLOW_SIDES}, got {s.flow}")
    task = s.task
    arrays = video.open()
    if s.flow == "target":
        view = lambda t: arrays["b"][t]  # noqa: E731
    elif task.guided:  # the flow of the guide, which is the cached clip itself
        view = lambda t: arrays["b"][t]  # noqa: E731
    elif "a" in arrays:
        view = lambda t: task.flow_view(arrays["a"][t])  # noqa: E731
    else:  # per-clip tasks: DIS on the input the task would make of the whole frame
        view = lambda t: task.flow_view(task.make_input(arrays["b"][t : t + 1])[0])  # noqa: E731
    key = settings_key(
        frames=frames_key, side=s.flow, preset=s.dis_preset,
        task=task.spec if s.flow == "source" else None,
        edges=list(task.edge_thresholds) if s.flow == "source" and task.name == "edges" else None,
    )
    return cached_flows(
        s.cache_dir, key, view, (video.length, video.height, video.width), video.cuts, s.dis_preset,
        label=f"{s.flow} ({video.name})",
    )


def prepare_videos(pairs: Sequence[VideoPair], s: PrepareSettings) -> list[PreparedVideo]:
    """Prepare every pair.  A bad or unreadable file is reported once, with its path, and
    skipped (``on_bad_file=skip``) or stops training (``fail``); none usable is an error."""
    videos, bad = [], []
    for pair in pairs:
        try:
            videos.append(prepare_video(pair, s))
        except (UserError, OSError, ValueError, cv2.error) as err:
            message = str(err) if isinstance(err, UserError) else f"{pair.target}: {err}"
            if s.on_bad_file == "fail" or len(pairs) == 1:
                raise UserError(message) from None
            log.warning("skipping a bad training file: %s", message)
            bad.append(message)
    if not videos:
        raise UserError(f"no usable training video ({len(bad)} bad); first problem: {bad[0]}")
    return videos


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
