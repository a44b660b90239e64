"""How a clean clip becomes a training input by degradation: ``restore``'s real encodes (and
optional noise), ``upscale2x``'s half-size frames (a share blurred first or x264-encoded after).
:mod:`.tasks` uses them; each draws its randomness from the ``rng`` it is given, so a seeded
run is reproducible."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


def downscale(frame: np.ndarray, factor: float = 2.0) -> np.ndarray:
    """``(H, W, C)`` -> ``(H // factor, W // factor, C)`` (sizes floored, at least 1) with the
    area filter: the ``upscale2x`` input, and the first step of :func:`down_up`."""
    h, w = frame.shape[:2]
    small = cv2.resize(frame, (max(1, int(w / factor)), max(1, int(h / factor))), interpolation=cv2.INTER_AREA)
    return small.reshape(*small.shape[:2], *frame.shape[2:])



@dataclass(frozen=True)
class Encoding:
    """One codec a ``restore`` video may be compressed with, and the range of its settings.

    Attributes:
        codec: an FFmpeg encoder the writer knows (``libx264``, ``libx265``, ``mpeg4``).
        quality: inclusive range of its constant-quality setting: CRF for x264/x265 (x264 30-40
            is visibly blocky, as in user uploads; x265's CRF is ~5 lower for the same look),
            the fixed quantiser (2-31) for MPEG-4 Part 2.
        presets: speed presets drawn from (x264/x265; the artefacts differ a little by preset).
    """

    codec: str = "libx264"
    quality: tuple[int, int] = (30, 40)
    presets: tuple[str, ...] = ("veryfast",)


@dataclass(frozen=True)
class RestoreDegradation:
    """How ``restore`` degrades a clean video: a real encode, then (optionally) Gaussian noise.

    Per video, from ``rng``: whether it stays clean (probability ``clean``: the model must learn
    to leave clean video alone), one of ``encodings`` (uniformly), its quality and preset, and a
    noise level (the noise itself per pixel).  So a seeded ``rng`` reproduces the same video.

    Attributes:
        encodings: the codecs and setting ranges drawn from.
        noise: range of the noise standard deviation, as a fraction of 255 (``(0, 0)``: none;
            noise is a separate, optional degradation: a model trained on it learns to smooth
            away real texture).
        clean: probability that a video's input is the clean video itself.
    """

    encodings: tuple[Encoding, ...] = (Encoding(),)
    noise: tuple[float, float] = (0.0, 0.0)
    clean: float = 0.0

    @classmethod
    def x264(cls, crf: tuple[int, int], noise: tuple[float, float] = (0.0, 0.0), preset: str = "veryfast"):
        """x264 only, at a CRF drawn from ``crf`` (the demo's and the tests' degradation)."""
        return cls((Encoding("libx264", crf, (preset,)),), noise)

    def draw(self, rng: np.random.Generator) -> tuple[Encoding | None, float]:
        """One video's encoding (one codec, one quality, one preset; None: stays clean) and
        noise std."""
        if self.clean > 0 and rng.random() < self.clean:
            return None, 0.0
        choice = self.encodings[int(rng.integers(len(self.encodings)))]
        quality = int(rng.integers(int(choice.quality[0]), int(choice.quality[1]) + 1))
        preset = str(choice.presets[int(rng.integers(len(choice.presets)))]) if choice.presets else "medium"
        sigma = float(rng.uniform(float(self.noise[0]), float(self.noise[1])))
        return Encoding(choice.codec, (quality, quality), (preset,)), sigma

    def __call__(
        self, frames: Iterable[np.ndarray], rng: np.random.Generator, fps: float = 25.0
    ) -> Iterator[np.ndarray]:
        """Degrade a stream of ``(H, W, 3)`` uint8 frames; yields the degraded frames in order.

        The clean frames go through the project's writer into a temporary ``.mp4`` and come back
        through the project's reader (so the artefacts are those of a real file)."""
        from ..io import (  # io imports errors only; kept local for clarity
            open_sink,
            open_source,
        )

        encoding, sigma = self.draw(rng)
        if encoding is None:
            yield from frames
            return
        with tempfile.TemporaryDirectory(prefix="v2v-restore-") as tmp:
            path = Path(tmp) / "degraded.mp4"
            frames = iter(frames)
            first = next(frames, None)
            if first is None:
                return
            with open_sink(
                path, width=first.shape[1], height=first.shape[0], fps=fps, crf=encoding.quality[0],
                preset=encoding.presets[0], codec=encoding.codec,
            ) as sink:
                sink.write(first)
                for frame in frames:
                    sink.write(frame)
            with open_source(path) as source:
                for frame in source:
                    yield add_noise(frame.image, sigma, rng)


def add_noise(frame: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``frame`` plus Gaussian noise of std ``sigma * 255``, rounded and clipped to uint8."""
    if sigma <= 0:
        return frame
    noisy = frame.astype(np.float32) + rng.normal(0.0, sigma * 255.0, frame.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Downscale:
    """How ``upscale2x`` makes its low-resolution training input from a clean clip: per clip
    (from ``rng``), a share of the clips blurred a little first, the area filter to half size,
    then a share of them through a real x264 encode at a mild CRF.

    Attributes:
        blur: probability that a clip is blurred before the downscale.
        sigma: range of that Gaussian blur's std, in full-size pixels.
        compressed: probability that the half-size clip is x264-encoded.
        crf: range of that encode's CRF (preset veryfast).
    """

    blur: float = 0.3
    sigma: tuple[float, float] = (0.3, 0.7)
    compressed: float = 0.3
    crf: tuple[int, int] = (18, 26)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``(T, H, W, 3)`` uint8, even sizes -> ``(T, H/2, W/2, 3)`` uint8."""
        if self.blur > 0 and rng.random() < self.blur:
            sigma = float(rng.uniform(*self.sigma))
            frames = np.stack([cv2.GaussianBlur(f, (0, 0), sigma, borderType=cv2.BORDER_REFLECT101) for f in frames])
        small = np.stack([downscale(f) for f in frames])
        if self.compressed > 0 and rng.random() < self.compressed:
            small = np.stack(list(RestoreDegradation.x264(tuple(self.crf))(small, rng)))
        return small

    @classmethod
    def from_mapping(cls, spec: Mapping) -> Downscale:
        """From its config / spec mapping (``data.upscale``); missing keys keep their defaults."""
        d = cls()
        return cls(
            blur=float(spec.get("blur", d.blur)),
            sigma=tuple(float(v) for v in spec.get("sigma", d.sigma)),
            compressed=float(spec.get("compressed", d.compressed)),
            crf=tuple(int(v) for v in spec.get("crf", d.crf)),
        )
