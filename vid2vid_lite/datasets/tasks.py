"""Tasks: what the model's input (A side) is, made from a video frame.

At inference a task turns each frame of the user's video into the model's input; at training
its pair maker turns a clean clip into (A, B) pairs.  Both use the same functions here so that
the model sees the same kind of input in both.

==========  ==============================  ==================  =====
task        input A                         target B            in ch
==========  ==============================  ==================  =====
restore     the frame as given (degraded)   clean frame         3
paired      the frame as given              the user's B side   3
colorize    luma (BT.601), 1 channel        color frame         1
edges       Canny edges of the frame        frame               1
upscale2x   frame resized 2x (bicubic)      high-res frame      3
==========  ==============================  ==================  =====
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import UserError


def gray(frame: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(H, W, 1)`` uint8 luma."""
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)[..., None]


def edges(frame: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(H, W, 1)`` uint8 Canny edge map (0 or 255)."""
    return cv2.Canny(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), low, high)[..., None]


def upscale2x(frame: np.ndarray) -> np.ndarray:
    """Bicubic 2x enlargement, the input of the ``upscale2x`` model."""
    h, w = frame.shape[:2]
    return cv2.resize(frame, (2 * w, 2 * h), interpolation=cv2.INTER_CUBIC)


@dataclass(frozen=True)
class Task:
    """How a frame becomes the model's input.

    Attributes:
        name: task name (also stored in checkpoints).
        in_channels: channels of the model's input.
        scale: output size / input size (2 for ``upscale2x``).
    """

    name: str
    in_channels: int = 3
    scale: int = 1

    def model_input(self, frame: np.ndarray) -> np.ndarray:
        """The model's input ``(H', W', in_channels)`` uint8 for a ``(H, W, 3)`` uint8 frame."""
        if self.name == "colorize":
            return gray(frame)
        if self.name == "edges":
            return edges(frame)
        if self.name == "upscale2x":
            return upscale2x(frame)
        return frame


TASKS = {
    t.name: t
    for t in (
        Task("restore"),
        Task("paired"),
        Task("colorize", in_channels=1),
        Task("edges", in_channels=1),
        Task("upscale2x", scale=2),
    )
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]
