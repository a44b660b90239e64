"""Training videos found and prepared once: decoded frames, scene cuts, degraded inputs and
DIS flows, cached on disk by content (datasets/flow_cache.py).

Pipeline::

    discover(data.train, data.target)          video files / frame folders -> VideoPair list
    prepare_videos(...)                        once per video, cached on disk by content:
        decode (+ resize to load_size) -> B frames, scene cuts
        A frames: given (paired / labels), degraded (restore), or none (made per clip)
        flows (DIS) when the model needs them

Data layouts ``data.train`` accepts:

- a video file, or a folder of frames (one sequence);
- a folder of videos and/or sequence folders (sorted naturally; hidden entries skipped);
- for ``paired``: the same layout again in ``data.target`` (B side), paired by sorted order;
  or vid2vid's layout, ``data.train=ROOT`` with ``ROOT/train_A/<seq>`` and ``ROOT/train_B/<seq>``.

Scene cuts are detected once per video (on B); the clip dataset (datasets/clips.py) keeps
every clip inside one shot.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import UserError
from ..image import processing_size
from ..io import READABLE_VIDEO_SUFFIXES, list_images, open_source
from ..io.base import is_temporary
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
    entries = sorted((p for p in root.iterdir() if not p.name.startswith(".") and not is_temporary(p.name)),
                     key=lambda p: natural_key(p.name))
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
    else:  # per-clip tasks: DIS on the input the task would make of the whole frame (half size
        # for upscale2x: compute_flows stores it at the frame's size)
        view = lambda t: task.flow_view(task.make_input(arrays["b"][t : t + 1])[0])  # noqa: E731
    key = settings_key(
        frames=frames_key, side=s.flow, preset=s.dis_preset,
        task=task.spec if s.flow == "source" else None,
        edges=list(task.edge_thresholds) if s.flow == "source" and task.name == "edges" else None,
        **({"input_scale": task.scale} if s.flow == "source" and task.scale != 1 else {}),
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
