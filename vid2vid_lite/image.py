"""uint8 frames <-> float tensors: the one conversion (kornia style: small functions, shapes in
the docstrings).

Frames travel as numpy ``(H, W, C)`` / ``(B, H, W, C)`` uint8 (what the readers yield and the
writers take); networks take ``(B, C, H, W)`` float32 tensors in ``[-1, 1]`` (``signed``, the
generators and discriminators) or in ``[0, 1]`` (``signed=False``, the metrics)::

    x = image_to_tensor(frames)          # (B, H, W, C) uint8 -> (B, C, H, W) in [-1, 1]
    frames = tensor_to_image(model(x))   # (B, C, H, W) in [-1, 1] -> (B, H, W, C) uint8

The float -> uint8 direction clamps to the range and rounds to the nearest level, so
``tensor_to_image(image_to_tensor(frames))`` gives the frames back exactly.  Also here: images
for viewers (:func:`signed_to_unit`, :func:`to_display`) and the processing size of ``resize``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

CV_DTYPES = (np.uint8, np.float32)  # what hwc_to_chw hands to cv2.split


def to_float(images: torch.Tensor, signed: bool = True) -> torch.Tensor:
    """uint8 tensor (any shape) -> float32 of the same shape in ``[-1, 1]`` (``signed``) or
    ``[0, 1]``."""
    out = images.to(torch.float32, copy=True)
    return out.div_(127.5).sub_(1.0) if signed else out.div_(255.0)


def to_uint8(images: torch.Tensor, signed: bool = True) -> torch.Tensor:
    """float tensor (any shape) in ``[-1, 1]`` (``signed``) or ``[0, 1]`` -> uint8 of the same
    shape, clamped and rounded."""
    images = images.float()
    scaled = (images.clamp(-1, 1) + 1.0) * 127.5 if signed else images.clamp(0, 1) * 255.0
    return scaled.round().to(torch.uint8)


def image_to_tensor(
    images: np.ndarray | Sequence[np.ndarray], signed: bool = True, device: torch.device | str | None = None
) -> torch.Tensor:
    """uint8 frames ``(H, W, C)``, ``(B, H, W, C)`` or a list of ``(H, W, C)`` -> contiguous
    ``(B, C, H, W)`` float32 in ``[-1, 1]`` (``signed``) or ``[0, 1]``, on ``device`` (pinned
    and copied asynchronously to CUDA)."""
    frames = images if isinstance(images, (list, tuple)) else np.asarray(images)
    if isinstance(frames, np.ndarray):
        frames = frames[None] if frames.ndim == 3 else frames
        if frames.ndim != 4:
            raise ValueError(f"expected (H, W, C) or (B, H, W, C) frames, got shape {frames.shape}")
    shapes = {np.shape(f) for f in frames}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        shown = sorted(shapes) if shapes else "no frames"
        raise ValueError(f"expected (H, W, C) or (B, H, W, C) frames of one shape, got {shown}")
    batch = hwc_to_chw(frames)
    device = torch.device(device) if device is not None else batch.device
    if device.type == "cuda":
        batch = batch.pin_memory().to(device, non_blocking=True)
    return to_float(batch, signed)


def tensor_to_image(images: torch.Tensor, signed: bool = True) -> np.ndarray:
    """``(B, C, H, W)`` float in ``[-1, 1]`` (``signed``) or ``[0, 1]`` -> ``(B, H, W, C)``
    uint8 numpy on the CPU."""
    return to_uint8(images, signed).permute(0, 2, 3, 1).cpu().numpy()


def signed_to_unit(images: torch.Tensor) -> torch.Tensor:
    """``[-1, 1]`` -> ``[0, 1]`` (clamped), any shape: for image viewers such as TensorBoard."""
    return (images.clamp(-1, 1) + 1) / 2


def to_display(a: torch.Tensor) -> torch.Tensor:
    """Model inputs ``(N, C, H, W)`` in ``[-1, 1]`` -> RGB ``(N, 3, H, W)`` to look at: RGB as
    is, one channel as gray, one-hot label maps in a fixed palette."""
    if a.shape[1] == 3:
        return a
    if a.shape[1] == 1:
        return a.expand(-1, 3, -1, -1)
    palette = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (a.shape[1], 3))).to(a)
    return palette[a.argmax(dim=1)].permute(0, 3, 1, 2)


def processing_size(height: int, width: int, short: int) -> tuple[int, int]:
    """``(height, width)`` with the short side scaled to ``short``, aspect kept."""
    scale = short / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def hwc_to_chw(frames: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """``(T, H, W, C)`` array or a non-empty list of ``(H, W, C)`` ones, any dtype -> contiguous
    ``(T, C, H, W)`` tensor of that dtype."""
    h, w, c = np.shape(frames[0])
    if np.asarray(frames[0]).dtype in CV_DTYPES:
        # Planes split by OpenCV straight into the (T, C, H, W) layout: for a 640x360 frame
        # 1.5x faster than a permuted copy with 3 channels, 4x with the 6 of a guided input.
        planes = np.stack([plane for frame in frames for plane in cv2.split(frame)])
        return torch.from_numpy(planes).view(len(frames), c, h, w)
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous()
