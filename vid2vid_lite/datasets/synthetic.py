"""Synthetic camera pans over a still photo, with the exact optical flow.

Frame t is the ``(h, w)`` crop of a photo whose top-left corner sits at ``offsets[t] = (x, y)``:
``frame_t[p] = photo[p + offsets[t]]``.  Hence ``frame_t[p] = frame_{t-1}[p + f_t]`` with the
constant backward flow ``f_t = offsets[t] - offsets[t-1]``, in the convention of
:mod:`vid2vid_lite.nn.warp`: ``warp(frame[t-1], flow[t]) ≈ frame[t]`` where valid.

Integer offsets are exact (crops are slices, and the warp of an integer shift is exact on
valid pixels).  Subpixel offsets are rendered with the project's bilinear :func:`warp`, so
the frames carry bilinear interpolation and 8-bit rounding.

The photos come with scikit-image (``skimage.data``), no download needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..nn.warp import warp

# Bundled with scikit-image; colour photos first.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "camera")


@dataclass
class SyntheticClip:
    """A rendered pan.

    frames: ``(T, h, w, 3)`` uint8 RGB.
    flows: ``(T, 2, h, w)`` float32 backward flow t -> t-1 in pixels, channels ``(dx, dy)``;
        ``flows[0]`` is zero (frame 0 has no previous frame).
    validity: ``(T, 1, h, w)`` float32, 1 where ``p + flows[t][p]`` lies inside frame t-1 (what
        a warp can actually sample); ``validity[0]`` is zero.
    offsets: ``(T, 2)`` float64 top-left ``(x, y)`` of each crop in the photo.
    """

    frames: np.ndarray
    flows: np.ndarray
    validity: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)


def load_photo(name: str = "astronaut") -> np.ndarray:
    """A photo from ``skimage.data`` as ``(H, W, 3)`` uint8 RGB (gray photos are replicated)."""
    import skimage.data  # dev extra; imported here so the package does not need it

    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; choose one of {PHOTOS}")
    photo = np.asarray(getattr(skimage.data, name)())
    if photo.ndim == 2:
        photo = np.repeat(photo[..., None], 3, axis=2)
    return np.ascontiguousarray(photo[..., :3].astype(np.uint8))


def pan_offsets(
    num_frames: int, velocity: Sequence[float] = (2.0, 1.0), start: Sequence[float] = (0.0, 0.0)
) -> np.ndarray:
    """Constant-velocity crop offsets ``(T, 2)``: ``start + t * velocity`` (pixels per frame)."""
    t = np.arange(num_frames, dtype=np.float64)[:, None]
    return np.asarray(start, dtype=np.float64) + t * np.asarray(velocity, dtype=np.float64)


def random_pan(
    rng: np.random.Generator,
    photo_size: tuple[int, int],
    size: tuple[int, int],
    num_frames: int,
    max_speed: float = 4.0,
    subpixel: bool = True,
) -> np.ndarray:
    """Random constant-velocity offsets ``(T, 2)`` that keep every crop inside the photo.

    Args:
        photo_size: ``(H, W)`` of the photo; size: ``(h, w)`` of the crops.
        max_speed: largest |dx| and |dy| in pixels per frame (reduced if the photo is too small).
        subpixel: draw real-valued velocities; else integers (exact frames).
    """
    room = np.array([photo_size[1] - size[1], photo_size[0] - size[0]], dtype=np.float64)
    if (room < 0).any():
        raise ValueError(f"crop {size} does not fit in photo {photo_size}")
    speed = np.minimum(max_speed, room / max(num_frames - 1, 1))
    velocity = rng.uniform(-speed, speed)
    if not subpixel:
        velocity = np.trunc(velocity)  # toward 0: stays within the speed limit
    travel = velocity * (num_frames - 1)
    # Start anywhere the whole path fits.
    low = np.maximum(0.0, -travel)
    high = room - np.maximum(0.0, travel)
    start = rng.uniform(low, high)
    if not subpixel:
        start = np.floor(start)
    return pan_offsets(num_frames, velocity, start)


def _crop(photo: torch.Tensor, x: float, y: float, h: int, w: int) -> torch.Tensor:
    """``(3, h, w)`` crop of ``photo`` ``(3, H, W)`` at top-left ``(x, y)``, bilinear if fractional."""
    ix, iy = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - ix, y - iy
    if fx == 0 and fy == 0:
        return photo[:, iy : iy + h, ix : ix + w]
    # One extra row/column for the interpolation (clipped at the photo border, where the
    # fraction samples at most the last pixel anyway), then shift by the fraction.
    region = photo[:, iy : iy + h + 1, ix : ix + w + 1]
    frac = torch.tensor([fx, fy], dtype=region.dtype).view(1, 2, 1, 1).expand(1, 2, *region.shape[1:])
    return warp(region[None], frac)[0, :, :h, :w]


def render_pan(photo: np.ndarray, offsets: np.ndarray, size: tuple[int, int]) -> SyntheticClip:
    """Render crops of ``photo`` ``(H, W, 3)`` uint8 of ``size`` ``(h, w)`` at ``offsets``
    ``(T, 2)`` (x, y); every crop must lie inside the photo."""
    h, w = size
    offsets = np.asarray(offsets, dtype=np.float64)
    big_h, big_w = photo.shape[:2]
    if (offsets < 0).any() or (offsets[:, 0] > big_w - w).any() or (offsets[:, 1] > big_h - h).any():
        raise ValueError(f"a {size} crop at these offsets leaves the {photo.shape[:2]} photo")
    source = torch.from_numpy(photo).permute(2, 0, 1).double()  # double: exact integer shifts
    frames = np.stack(
        [_crop(source, x, y, h, w).round().clamp(0, 255).byte().permute(1, 2, 0).numpy() for x, y in offsets]
    )

    num = len(offsets)
    flows = np.zeros((num, 2, h, w), dtype=np.float32)
    validity = np.zeros((num, 1, h, w), dtype=np.float32)
    xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    for t in range(1, num):
        dx, dy = offsets[t] - offsets[t - 1]
        flows[t, 0], flows[t, 1] = dx, dy
        inside_x = (xs + dx >= 0) & (xs + dx <= w - 1)
        inside_y = (ys + dy >= 0) & (ys + dy <= h - 1)
        validity[t, 0] = inside_y[:, None] & inside_x[None, :]
    return SyntheticClip(frames=frames, flows=flows, validity=validity, offsets=offsets)


def camera_pan(
    photo: str | np.ndarray = "astronaut",
    num_frames: int = 8,
    size: tuple[int, int] = (128, 128),
    velocity: Sequence[float] = (2.0, 1.0),
    start: Sequence[float] = (0.0, 0.0),
) -> SyntheticClip:
    """A constant-velocity pan of ``num_frames`` crops of ``size`` ``(h, w)`` over ``photo`` (a
    :data:`PHOTOS` name or an ``(H, W, 3)`` uint8 array), ``velocity`` ``(dx, dy)`` pixels per
    frame (integers: exact), starting at crop offset ``start`` ``(x, y)``."""
    image = load_photo(photo) if isinstance(photo, str) else photo
    return render_pan(image, pan_offsets(num_frames, velocity, start), size)


def camera_move(
    photo: np.ndarray,
    num_frames: int,
    size: tuple[int, int],
    rng: np.random.Generator,
    max_zoom: float = 1.15,
    max_degrees: float = 3.0,
) -> np.ndarray:
    """A hand-held-like camera move over ``photo`` ``(H, W, 3)`` uint8: ``(T, h, w, 3)`` uint8.

    The view pans at a random constant speed (at most ~6 px a frame), zooms smoothly by up to
    ``max_zoom`` (in or out) and turns by up to ``max_degrees`` over the clip, with no parallax
    (a flat scene).  The photo is first shrunk (area filter, so the frames are clean) until the
    view's diagonal spans 60-85% of its short side, then each frame is resampled bicubically.  Training data for ``restore``: real texture with
    real motion, no compression of its own.
    """
    h, w = size
    # Half the view's diagonal at the widest zoom: room for any rotation.
    reach = 0.5 * float(np.hypot(w, h)) * max_zoom * 1.01
    cover = rng.uniform(0.6, 0.85)  # that diagonal's share of the photo's short side
    scale = 2 * reach / (cover * min(photo.shape[:2]))
    if scale < 1:
        photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    big_h, big_w = photo.shape[:2]
    zoom = np.exp(np.linspace(0.0, rng.uniform(-1, 1) * np.log(max_zoom), num_frames))
    angle = np.linspace(0.0, rng.uniform(-max_degrees, max_degrees), num_frames)
    # The view's centre moves in a straight line that keeps the (rotated, zoomed) view inside.
    low, high = np.array([reach, reach]), np.array([big_w - reach, big_h - reach])
    if (high <= low).any():
        raise ValueError(f"photo {photo.shape[:2]} is too small for a {size} view")
    start, end = rng.uniform(low, high), rng.uniform(low, high)
    travel = np.minimum(1.0, 6.0 * (num_frames - 1) / max(1e-6, float(np.hypot(*(end - start)))))
    end = start + (end - start) * travel  # at most ~6 px a frame
    frames = []
    for t in range(num_frames):
        centre = start + (end - start) * t / max(1, num_frames - 1)
        # Maps output pixels to photo pixels: rotate and scale about the view's centre.
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), float(angle[t]), 1.0 / float(zoom[t]))
        matrix[:, 2] += centre - np.array([w / 2, h / 2])
        frames.append(cv2.warpAffine(photo, matrix, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                                     borderMode=cv2.BORDER_REFLECT101))
    return np.stack(frames)
