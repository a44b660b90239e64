"""Per-frame image processes that make video flicker: ``deflicker``'s training pairs and its
held-out evaluation.

A process maps an ``(H, W, 3)`` uint8 RGB frame and a parameter vector ``p`` (each entry in
[-1, 1]) to a processed frame.  Run on a video with parameters that change from frame to frame
it flickers, as per-frame image models and filters do; run with one parameter vector for the
whole clip (the mean of the per-frame ones) it is the **stable version**, the ideal output of
``deflicker`` (Lai et al., ECCV 2018, measure against the same idea).

``TRAIN_PROCESSES`` make the training pairs (:func:`flicker_pair`; ``data.deflicker.processes``
picks which).  ``HELDOUT_PROCESSES`` are used only by ``tools/results.py``: no training or model
choice sees them.  Two of those are *adaptive*: their parameters come from the frame itself
(per-frame white balance, histogram equalisation), the way auto-exposure or auto-levels flicker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import cache

import cv2
import numpy as np

from ..errors import UserError


@dataclass(frozen=True)
class Process:
    """One per-frame process.

    Attributes:
        name: its name.
        dims: length of its parameter vector.
        apply: ``(frame (H, W, 3) uint8, p (dims,) float in [-1, 1]) -> (H, W, 3) uint8``.
        measure: for adaptive processes, ``frame -> p``, the parameters the frame itself gives;
            None where the parameters are drawn at random.
    """

    name: str
    dims: int
    apply: Callable[[np.ndarray, np.ndarray], np.ndarray]
    measure: Callable[[np.ndarray], np.ndarray] | None = None


def _to_u8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- training processes


def tone(frame: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Brightness ±0.2, contrast ×(1 ± 0.35), saturation ×(1 ± 0.5), hue ±10°, as photo apps do."""
    hsv = cv2.cvtColor(frame.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)  # H in degrees
    hsv[..., 0] = (hsv[..., 0] + 10.0 * p[3]) % 360.0
    hsv[..., 1] = np.clip(hsv[..., 1] * (1.0 + 0.5 * p[2]), 0.0, 1.0)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    mean = rgb.mean()
    rgb = (rgb - mean) * (1.0 + 0.35 * p[1]) + mean + 0.2 * p[0]
    return _to_u8(rgb * 255.0)


def gamma(frame: np.ndarray, p: np.ndarray) -> np.ndarray:
    """A gamma of 2^(±0.5) per channel: tone curves and colour casts."""
    lut = np.arange(256, dtype=np.float32) / 255.0
    out = np.empty_like(frame)
    for c in range(3):
        out[..., c] = cv2.LUT(frame[..., c], _to_u8(255.0 * lut ** (2.0 ** (0.5 * p[c]))))
    return out


def clahe(frame: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Local contrast: CLAHE on the L channel, clip limit 1-5 (p[0]) blended in by 0.3-1 (p[1])."""
    lab = cv2.cvtColor(frame, cv2.COLOR_RGB2LAB)
    limit = 3.0 + 2.0 * float(p[0])
    lab[..., 0] = cv2.createCLAHE(clipLimit=limit, tileGridSize=(8, 8)).apply(lab[..., 0])
    out = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB).astype(np.float32)
    amount = 0.65 + 0.35 * float(p[1])
    return _to_u8(amount * out + (1.0 - amount) * frame)


def sharpen(frame: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Unsharp mask with amount -0.75 (a blur) to +1.75 (p[0]), radius sigma 0.8-2.4 (p[1])."""
    sigma = 1.6 + 0.8 * float(p[1])
    blurred = cv2.GaussianBlur(frame, (0, 0), sigma).astype(np.float32)
    amount = 0.5 + 1.25 * float(p[0])
    return _to_u8(frame + amount * (frame.astype(np.float32) - blurred))


def detail(frame: np.ndarray, p: np.ndarray) -> np.ndarray:
    """OpenCV's detail enhancement filter, sigma_s 5-25 (p[0]), sigma_r 0.05-0.25 (p[1])."""
    return cv2.detailEnhance(frame, sigma_s=15.0 + 10.0 * float(p[0]), sigma_r=0.15 + 0.1 * float(p[1]))


def jpeg(frame: np.ndarray, p: np.ndarray) -> np.ndarray:
    """A JPEG round trip at quality 15-85 (p[0])."""
    quality = int(round(50 + 35 * float(p[0])))
    ok, data = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].copy()


@cache
def _bundled_model(name: str):
    """A bundled generator, loaded once per process (data workers included)."""
    from ..checkpoint import load_generator  # checkpoint imports this package's tasks

    return load_generator(name)[0]


def restore_model(frame: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The bundled frame-wise restore model (pix2pix) on the frame downscaled 1-3x and back
    (p[0], ``tasks.down_up``) and put through :func:`jpeg` (p[1]): a per-frame enhancement network whose
    output's sharpness and texture change with its input's quality.  It is the installed
    ``restore-framewise`` weights, so installing a retrained one changes this process."""
    import torch

    from ..image import image_to_tensor, tensor_to_image
    from .tasks import down_up  # tasks imports this module

    degraded = jpeg(down_up(frame, 2.0 + float(p[0])), p[1:])
    with torch.inference_mode():
        return tensor_to_image(_bundled_model("restore-framewise")(image_to_tensor(degraded)))[0]


TRAIN_PROCESSES = {
    p.name: p
    for p in (
        Process("tone", 4, tone),
        Process("gamma", 3, gamma),
        Process("clahe", 2, clahe),
        Process("sharpen", 2, sharpen),
        Process("detail", 2, detail),
        Process("jpeg", 1, jpeg),
        Process("restore_model", 2, restore_model),
    )
}


# --------------------------------------------------------------------------- held-out processes


def white_balance(frame: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Channel gains 2^p (what :func:`gray_world` measures)."""
    return _to_u8(frame.astype(np.float32) * (2.0 ** np.asarray(p, np.float32)))


def gray_world(frame: np.ndarray) -> np.ndarray:
    """Gray-world auto white balance: the log2 gains that make the channel means equal."""
    means = frame.reshape(-1, 3).astype(np.float64).mean(axis=0) + 1.0
    return np.clip(np.log2(means.mean() / means), -1.0, 1.0)


def equalize(frame: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Histogram equalisation of luma by the 256-entry CDF ``p`` (scaled to [-1, 1])."""
    ycc = cv2.cvtColor(frame, cv2.COLOR_RGB2YCrCb)
    ycc[..., 0] = cv2.LUT(ycc[..., 0], _to_u8((np.asarray(p) + 1.0) * 127.5))
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def luma_cdf(frame: np.ndarray) -> np.ndarray:
    """The frame's luma CDF in [-1, 1] (equalisation's look-up table)."""
    y = cv2.cvtColor(frame, cv2.COLOR_RGB2YCrCb)[..., 0]
    cdf = np.cumsum(np.bincount(y.ravel(), minlength=256)).astype(np.float64)
    return cdf / cdf[-1] * 2.0 - 1.0


def stylize(frame: np.ndarray, p: np.ndarray) -> np.ndarray:
    """OpenCV's stylization filter, sigma_s 20-80 (p[0]), sigma_r 0.2-0.6 (p[1])."""
    return cv2.stylization(frame, sigma_s=50.0 + 30.0 * float(p[0]), sigma_r=0.4 + 0.2 * float(p[1]))


HELDOUT_PROCESSES = {
    p.name: p
    for p in (
        Process("white balance", 3, white_balance, measure=gray_world),
        Process("equalize", 256, equalize, measure=luma_cdf),
        Process("stylize", 2, stylize),
    )
}


# --------------------------------------------------------------------------- clips


@dataclass(frozen=True)
class Flicker:
    """How ``deflicker`` makes its training pairs (:func:`flicker_pair`).

    Attributes:
        strength: range of the per-frame parameter jitter's std (parameters span [-1, 1]).
        constant: probability that a clip's process has no jitter (nothing to fix).
        max_processes: at most this many processes in a row.
        processes: the names of the ``TRAIN_PROCESSES`` to draw from.  ``restore_model`` is not
            among the defaults: it runs a network in the data workers (1.4x slower training)
            and the bundled model was no better on val with it (tools/train_bundled.py).
    """

    strength: tuple[float, float] = (0.0, 0.5)
    constant: float = 0.15
    max_processes: int = 2
    processes: tuple[str, ...] = ("tone", "gamma", "clahe", "sharpen", "detail", "jpeg")

    def __post_init__(self) -> None:
        unknown = [name for name in self.processes if name not in TRAIN_PROCESSES]
        if unknown or not self.processes:
            raise UserError(f"data.deflicker.processes: unknown or none ({', '.join(unknown) or 'empty'}); "
                            f"choose from {', '.join(TRAIN_PROCESSES)}")
        if not 1 <= self.max_processes <= len(set(self.processes)):
            raise UserError(f"data.deflicker.max_processes={self.max_processes}: use 1..{len(set(self.processes))}, "
                            "the number of data.deflicker.processes")

    @classmethod
    def from_mapping(cls, spec: Mapping) -> Flicker:
        """From a config / checkpoint mapping; keys it lacks keep their defaults."""
        types = {"strength": lambda v: tuple(float(x) for x in v), "constant": float, "max_processes": int,
                 "processes": lambda v: tuple(str(x) for x in v)}
        return cls(**{f.name: types[f.name](spec[f.name]) for f in fields(cls) if spec.get(f.name) is not None})


def frame_params(process: Process, frames: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Per-frame parameters ``(T, dims)``: measured from each frame (adaptive processes), or a
    clip-level draw in [-1, 1] plus independent per-frame jitter of std ``strength``."""
    if process.measure is not None:
        return np.stack([process.measure(f) for f in frames])
    base = rng.uniform(-1.0, 1.0, process.dims)
    return np.clip(base + strength * rng.standard_normal((len(frames), process.dims)), -1.0, 1.0)


def run_process(
    process: Process, frames: np.ndarray, params: np.ndarray, stable_frames: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(processed, stable)`` clips ``(T, H, W, 3)``: each frame with its own parameters, and
    every frame (of ``stable_frames``, default ``frames``) with the clip's mean parameters."""
    mean = params.mean(axis=0)
    processed = np.stack([process.apply(f, p) for f, p in zip(frames, params)])
    stable = np.stack([process.apply(f, mean) for f in (frames if stable_frames is None else stable_frames)])
    return processed, stable


def flicker_pair(
    frames: np.ndarray, rng: np.random.Generator, settings: Flicker = Flicker()
) -> tuple[np.ndarray, np.ndarray]:
    """``deflicker``'s training pair for a clean clip ``(T, H, W, 3)`` uint8: the clip put
    through 1..``settings.max_processes`` random processes of ``settings.processes`` (in
    ``TRAIN_PROCESSES``' order) whose parameters change from frame to frame (jitter std drawn
    from ``settings.strength``; with probability ``settings.constant`` none: the model must leave
    stable video alone), and its stable version (each process at the clip's mean parameters),
    the target."""
    names = [name for name in TRAIN_PROCESSES if name in settings.processes]
    chosen = rng.choice(len(names), size=int(rng.integers(1, settings.max_processes + 1)), replace=False)
    jitter = 0.0 if rng.random() < settings.constant else float(rng.uniform(*settings.strength))
    processed, stable = frames, frames
    for i in sorted(chosen):  # a fixed order: tone before jpeg, as an app would
        process = TRAIN_PROCESSES[names[i]]
        processed, stable = run_process(process, processed, frame_params(process, frames, rng, jitter), stable)
    return processed, stable
