"""DIS optical flow (OpenCV, on the CPU): the flow a ``flow=dis`` temporal generator is fed, and
the flow the losses and metrics measure motion with.

Not a network: numpy frames in, torch tensors out, no weights.  A *backward* flow t -> t-1
``(1, 2, H, W)`` in pixels (see :mod:`vid2vid_lite.nn.warp`) comes with a validity map
``(1, 1, H, W)`` (1 = trust it) from the forward-backward occlusion test.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np
import torch

from .image import hwc_to_chw
from .nn.warp import occlusion_mask

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def _to_gray_u8(frame: np.ndarray) -> np.ndarray:
    if frame.dtype != np.uint8:
        raise ValueError(f"DIS flow expects uint8 frames, got {frame.dtype}")
    if frame.ndim == 2:
        return np.ascontiguousarray(frame)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    raise ValueError(f"DIS flow expects (H, W) or (H, W, 3) frames, got {frame.shape}")


class DISFlow:
    """OpenCV DIS optical flow.  Thread-safe: each thread gets its own OpenCV object.

    Args:
        preset: ``ultrafast``, ``fast`` (default; ~3 ms per 640x360 pair here) or ``medium``.
    """

    def __init__(self, preset: str = "fast") -> None:
        if preset not in DIS_PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}; choose one of {sorted(DIS_PRESETS)}")
        self.preset = preset
        self._local = threading.local()

    def _dis(self):
        dis = getattr(self._local, "dis", None)
        if dis is None:
            dis = cv2.DISOpticalFlow_create(DIS_PRESETS[self.preset])
            self._local.dis = dis
        return dis

    def flow(self, target: np.ndarray, source: np.ndarray) -> np.ndarray:
        """Flow ``(H, W, 2)`` float32 from ``target`` to ``source``: ``target[p] ≈ source[p + f[p]]``.

        Frames are ``(H, W, 3)`` RGB or ``(H, W)`` gray uint8.
        """
        return self._dis().calc(_to_gray_u8(target), _to_gray_u8(source), None)

    def backward_with_validity(
        self, current: np.ndarray, previous: np.ndarray, check: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Backward flow current -> previous ``(1, 2, H, W)`` and validity ``(1, 1, H, W)``.

        With ``check`` the validity is the forward-backward occlusion test (two DIS calls);
        without, it is all ones (one DIS call).
        """
        bwd = self._as_tensor(self.flow(current, previous))
        if not check:
            return bwd, torch.ones_like(bwd[:, :1])
        fwd = self._as_tensor(self.flow(previous, current))
        return bwd, occlusion_mask(bwd, fwd)

    @staticmethod
    def _as_tensor(flow: np.ndarray) -> torch.Tensor:
        """(H, W, 2) -> a contiguous (1, 2, H, W): the occlusion test on a permuted view of
        OpenCV's layout took 8.0 ms a 640x360 pair instead of 3.6 (one thread); the copy 0.15."""
        return hwc_to_chw(flow[None])
