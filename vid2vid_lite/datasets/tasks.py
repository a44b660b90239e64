"""Tasks: what the model's input (A side) is, made from a video frame.

At inference a task turns each frame of the user's video into the model's input
(:meth:`Task.model_input`); at training its pair maker turns a clean clip into (A, B) pairs
(:meth:`Task.make_input`).  Both use the same functions here so that the model sees the same
kind of input in both.

==========  ==================================  ==================  =====  ===========
task        input A                             target B            in ch  A made
==========  ==================================  ==================  =====  ===========
restore     the clip re-encoded (x264, x265 or  clean frame         3      per video
            MPEG-4 at a random quality)
paired      the user's A side                   the user's B side   3      given
colorize    luma (BT.601), 1 channel            color frame         1      per clip
edges       Canny edges of the frame            frame               1      per clip
upscale2x   the frame at half size (area        original frame      3      per clip
            filter; some clips blurred or x264  (twice the input's
            compressed)                         size)
labels:N    one-hot of an integer label map     the user's B side   N      given
deflicker   the clip put through per-frame      the same processes  6      per clip
            processes with flickering           at the clip's mean
            parameters | the clip (the guide)   parameters
==========  ==================================  ==================  =====  ===========

``upscale2x`` outputs twice the input's width and height (:attr:`Task.scale`): at inference
the user's frame is the input as it is; at training the input is made from the (even-sized)
target by :class:`Downscale`.

"per clip" pair makers are cheap and run in the data workers on the augmented (cropped,
scaled, flipped) target clip, so A always matches B exactly.  ``restore`` encodes a whole
video once (cached by the clip dataset) because x264 works on sequences, not on crops.

``labels:N`` is what ``data.task=paired data.label_nc=N`` trains: A is read as an image whose
first channel holds the class index (8-bit integer PNGs), one-hot encoded to N channels of
0/255 (so [-1, 1] after the usual scaling, at training and inference alike).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from ..errors import UserError
from .degradations import Downscale, Encoding, RestoreDegradation, downscale
from .processes import Flicker, flicker_pair

# --------------------------------------------------------------------------- per-frame makers


def gray(frame: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(H, W, 1)`` uint8 luma."""
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)[..., None]


def edges(frame: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(H, W, 1)`` uint8 Canny edge map (0 or 255)."""
    return cv2.Canny(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), low, high)[..., None]


def lanczos(frame: np.ndarray, scale: int = 2) -> np.ndarray:
    """``(H, W, C)`` -> ``(scale·H, scale·W, C)`` with OpenCV's Lanczos (``INTER_LANCZOS4``):
    the classical baseline an ``upscale2x`` model must beat (its untrained output)."""
    h, w = frame.shape[:2]
    big = cv2.resize(frame, (scale * w, scale * h), interpolation=cv2.INTER_LANCZOS4)
    return big.reshape(*big.shape[:2], *frame.shape[2:])


def down_up(frame: np.ndarray, factor: float = 2.0) -> np.ndarray:
    """Area-downsample by ``factor``, then bicubic back to ``(H, W)``: lost detail, as an
    upscaler's input (deflicker's ``restore_model`` process, at 1-3)."""
    h, w = frame.shape[:2]
    return cv2.resize(downscale(frame, factor), (w, h), interpolation=cv2.INTER_CUBIC)


def even_crop(frames: np.ndarray) -> np.ndarray:
    """``(..., H, W, C)`` cropped to even sizes (the last row / column dropped where odd): a
    ×2 model's target is exactly twice its input."""
    h, w = frames.shape[-3:-1]
    return frames[..., : h - h % 2, : w - w % 2, :]


def one_hot(labels: np.ndarray, label_nc: int) -> np.ndarray:
    """Integer label map ``(..., H, W, C)`` (class in channel 0) or ``(H, W)`` -> ``(..., H, W, N)``
    uint8 0/255.

    Raises:
        UserError: a label is ``>= label_nc``.
    """
    index = labels[..., 0] if labels.ndim >= 3 else labels
    top = int(index.max(initial=0))
    if top >= label_nc:
        raise UserError(f"label map holds class {top} but data.label_nc={label_nc}; raise data.label_nc")
    out = np.zeros((*index.shape, label_nc), dtype=np.uint8)
    np.put_along_axis(out, index[..., None].astype(np.intp), 255, axis=-1)
    return out


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Task:
    """How a frame becomes the model's input, at inference and at training.

    Attributes:
        name: task name (``restore``, ``paired``, ``colorize``, ``edges``, ``upscale2x``,
            ``labels``).
        in_channels: channels of the model's input.
        scale: output size / input size at inference (2 for ``upscale2x``).
        label_nc: number of classes for ``labels``.
        edge_thresholds: Canny's low and high thresholds for ``edges``.
        degradation: the ``restore`` degradation.
        flicker: the ``deflicker`` pair maker's settings.
        downscale: the ``upscale2x`` pair maker's settings.
    """

    name: str
    in_channels: int = 3
    scale: int = 1
    label_nc: int = 0
    edge_thresholds: tuple[int, int] = (100, 200)
    degradation: RestoreDegradation = field(default_factory=RestoreDegradation)
    flicker: Flicker = field(default_factory=Flicker)
    downscale: Downscale = field(default_factory=Downscale)

    @property
    def spec(self) -> str:
        """The task's name with its class count (``labels:N``); :func:`get_task` turns it back
        into this task with default options."""
        return f"labels:{self.label_nc}" if self.name == "labels" else self.name

    def to_spec(self) -> dict:
        """Everything that makes this task, as JSON (what a checkpoint stores; :meth:`from_spec`
        rebuilds the task): the name, the label classes, Canny's thresholds and the ``restore``
        degradation."""
        d = self.degradation
        return {
            "name": self.spec,
            "label_nc": self.label_nc,
            "edge_thresholds": list(self.edge_thresholds),
            "degradation": {
                "encodings": [{"codec": e.codec, "quality": list(e.quality), "presets": list(e.presets)} for e in d.encodings],
                "noise": list(d.noise),
                "clean": d.clean,
            },
            "flicker": {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(self.flicker).items()},
            "downscale": {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(self.downscale).items()},
        }

    @classmethod
    def from_spec(cls, spec: str | Mapping) -> Task:
        """The task a spec describes: :meth:`to_spec`'s mapping (options it lacks keep their
        defaults), or a bare name such as ``edges`` or ``labels:N`` (checkpoints written before
        the whole spec was stored: default options)."""
        if isinstance(spec, str):
            return get_task(spec)
        options = {}
        if spec.get("edge_thresholds") is not None:
            options["edge_thresholds"] = tuple(int(v) for v in spec["edge_thresholds"])
        if spec.get("degradation") is not None:
            options["degradation"] = cls._degradation(spec["degradation"])
        if spec.get("flicker") is not None:
            options["flicker"] = Flicker.from_mapping(spec["flicker"])
        if spec.get("downscale") is not None:
            options["downscale"] = Downscale.from_mapping(spec["downscale"])
        return get_task(str(spec["name"]), label_nc=int(spec.get("label_nc") or 0), **options)

    @staticmethod
    def _degradation(spec: Mapping) -> RestoreDegradation:
        """A :class:`RestoreDegradation` from its config / spec mapping (``data.restore``)."""
        encodings = spec.get("encodings") or [{"codec": "libx264", "quality": (30, 40)}]
        return RestoreDegradation(
            encodings=tuple(
                Encoding(str(e["codec"]), tuple(int(v) for v in e["quality"]), tuple(str(p) for p in e.get("presets") or ()))
                for e in encodings
            ),
            noise=tuple(float(v) for v in spec.get("noise", (0.0, 0.0))),
            clean=float(spec.get("clean", 0.0)),
        )

    @property
    def given_input(self) -> bool:
        """True where the A side comes from the user (``paired``, ``labels``)."""
        return self.name in ("paired", "labels")

    @property
    def per_video(self) -> bool:
        """True where A is made once per video (``restore``: x264 works on sequences)."""
        return self.name == "restore"

    @property
    def per_clip(self) -> bool:
        """True where A is made from each augmented target clip (cheap per-frame makers)."""
        return self.name in ("colorize", "edges", "upscale2x", "deflicker")

    @property
    def guided(self) -> bool:
        """True where the model also takes a guide video (``deflicker``: the original video
        whose per-frame processed version is the input); its flow is the guide's."""
        return self.name == "deflicker"

    def model_input(self, frame: np.ndarray, guide: np.ndarray | None = None) -> np.ndarray:
        """The model's input ``(H', W', in_channels)`` uint8 for a ``(H, W, 3)`` uint8 frame
        (at inference: the user's frame is the A side) and, for a :attr:`guided` task, the
        guide's frame of the same size."""
        if self.guided:
            if guide is None or guide.shape != frame.shape:
                raise ValueError(f"{self.name} needs a guide frame of the input's shape {frame.shape}")
            return cv2.merge([frame, guide])  # 7x faster than np.concatenate on the last axis
        if self.name == "colorize":
            return gray(frame)
        if self.name == "edges":
            return edges(frame, *self.edge_thresholds)
        if self.name == "labels":
            return one_hot(frame, self.label_nc)
        return frame

    def make_input(self, frames: np.ndarray) -> np.ndarray:
        """Training pair maker for the per-clip tasks: target clip ``(T, H, W, 3)`` uint8 ->
        input clip ``(T, H / scale, W / scale, in_channels)`` uint8 (``upscale2x``: the clean
        half-size clip, sizes floored, without :class:`Downscale`'s random blur and encode).

        ``restore`` uses :meth:`degrade` (a whole video at once); ``paired``/``labels`` have
        no maker (the user gives A)."""
        if self.name == "colorize":
            return np.stack([gray(f) for f in frames])
        if self.name == "edges":
            return np.stack([edges(f, *self.edge_thresholds) for f in frames])
        if self.name == "upscale2x":
            return np.stack([downscale(f) for f in frames])
        if self.name == "restore":
            raise ValueError("restore degrades whole videos: use Task.degrade")
        if self.name == "deflicker":
            raise ValueError("deflicker changes its target too: use Task.make_pair")
        raise ValueError(f"task {self.name} has no pair maker: its A side is given (data.train)")

    def make_pair(self, frames: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Training pair ``(input, target)`` of a per-clip task from a clip ``(T, H, W, 3)``
        uint8.  ``deflicker``: the clip processed with flickering parameters next to the clip
        itself (the guide), and the stable version as the target; ``upscale2x``: the clip cropped
        to even sizes as the target, and :class:`Downscale` of it; the others keep the clip as
        the target (:meth:`make_input`)."""
        if self.name == "deflicker":
            processed, stable = flicker_pair(frames, rng, self.flicker)
            return np.stack([self.model_input(p, guide) for p, guide in zip(processed, frames)]), stable
        if self.name == "upscale2x":
            target = even_crop(frames)
            return self.downscale(target, rng), target
        return self.make_input(frames), frames

    def degrade(
        self, frames: Iterable[np.ndarray], rng: np.random.Generator, fps: float = 25.0
    ) -> Iterator[np.ndarray]:
        """``restore``'s pair maker: a clean video's frames -> the degraded frames (streamed)."""
        if self.name != "restore":
            raise ValueError(f"only restore degrades whole videos, not {self.name}")
        return self.degradation(frames, rng, fps)

    def flow_view(self, a: np.ndarray) -> np.ndarray:
        """What DIS sees of a model input ``(H, W, C)`` uint8 (:meth:`model_input`'s output, or
        a label index map ``(H, W, 1)`` as the training cache stores it): RGB as is, one channel
        as gray, label maps as the class index stretched over 0-255, a guided input as its guide."""
        if self.guided:
            return a[..., 3:6]
        if self.name == "labels":
            index = a.argmax(axis=-1) if a.shape[-1] == self.label_nc and self.label_nc > 1 else a[..., 0]
            return np.minimum(index.astype(np.uint16) * (255 // max(1, self.label_nc - 1)), 255).astype(np.uint8)
        return a[..., 0] if a.shape[-1] == 1 else a


TASKS = {
    t.name: t
    for t in (
        Task("restore"),
        Task("paired"),
        Task("colorize", in_channels=1),
        Task("edges", in_channels=1),
        Task("upscale2x", scale=2),
        Task("deflicker", in_channels=6),
    )
}

TRAIN_TASKS = ("restore", "colorize", "upscale2x", "edges", "deflicker", "paired")


def get_task(name: str, **options) -> Task:
    """The task called ``name`` (``labels:N``, or ``paired`` with ``label_nc=N``: N-class label maps).

    ``options`` set :class:`Task` fields: ``label_nc``, ``edge_thresholds``, ``degradation``,
    ``flicker``, ``downscale``.
    """
    name = str(name)
    if name.startswith("labels:"):
        try:
            label_nc = int(name.split(":", 1)[1])
        except ValueError:
            raise UserError(f"bad task {name!r}; label maps are labels:N with N classes") from None
        options["label_nc"] = label_nc
        name = "labels"
    if name == "paired" and options.get("label_nc"):  # paired label maps
        name = "labels"
    if name == "labels":
        label_nc = int(options.get("label_nc") or 0)
        if label_nc < 2:
            raise UserError("label maps need data.label_nc=N with N >= 2 classes")
        return Task("labels", in_channels=label_nc, **options)
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    if options.get("label_nc"):
        raise UserError(f"data.label_nc is for label maps: use it with data.task=paired, not {name}")
    options.pop("label_nc", None)
    base = TASKS[name]
    return Task(base.name, base.in_channels, base.scale, **options) if options else base
