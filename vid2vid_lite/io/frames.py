"""Frame folders: read a folder of images as a video, write one PNG per frame.

Reading accepts png, jpg, jpeg, webp, bmp, tif and tiff, in natural order (``frame2`` before
``frame10``); 8- and 16-bit, gray, RGB and RGBA all become 8-bit RGB.  Every frame must have
the size of the first: the first odd file is named in the error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import UserError
from .base import AtomicSink, Frame, Prefetcher, VideoInfo, commit, discard, temporary_sibling
from .formats import IMAGE_SUFFIXES, list_images


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Any OpenCV image (gray/BGR/BGRA, 8- or 16-bit) -> ``(H, W, 3)`` uint8 RGB."""
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"unsupported image depth {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image(path: Path) -> np.ndarray:
    """One image file -> ``(H, W, 3)`` uint8 RGB."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise UserError(f"cannot read image {path}; the file is damaged or not an image")
    return to_rgb8(image)


def _image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError):
        raise UserError(f"cannot read image {path}; the file is damaged or not an image") from None


class FolderSource:
    """Stream the images of a folder as frames (decoded in a background thread)."""

    def __init__(self, path: str | Path, queue_size: int = 8, start: int = 0) -> None:
        """``start`` skips to that frame."""
        self.path = Path(path)
        self.damage: str | None = None
        self.start = start
        if not self.path.is_dir():
            raise UserError(f"input not found: {self.path}")
        self.files = list_images(self.path)
        if not self.files:
            raise UserError(
                f"{self.path} holds no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}); "
                "give a folder of frames or a video file"
            )
        width, height = _image_size(self.files[0])
        for file in self.files[1:]:
            if _image_size(file) != (width, height):
                w, h = _image_size(file)
                raise UserError(
                    f"{file} is {w}x{h} but {self.files[0].name} is {width}x{height}; "
                    "all frames of a folder must have one size"
                )
        self.info = VideoInfo(
            path=self.path, kind="frames", width=width, height=height, num_frames=len(self.files)
        )
        self._prefetch = Prefetcher(self._frames, maxsize=queue_size, name="v2v-read-frames")

    def _frames(self) -> Iterator[Frame]:
        for index, file in enumerate(self.files[self.start :], start=self.start):
            yield Frame(image=read_image(file), index=index)

    def __iter__(self) -> Iterator[Frame]:
        return iter(self._prefetch)

    def close(self) -> None:
        self._prefetch.close()

    def __enter__(self) -> FolderSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FolderSink(AtomicSink):
    """Write frames as ``000000.png``, ``000001.png``, … into a folder, atomically.

    The PNGs go to a temporary folder (``temporary``, or a fresh one beside ``path``), which replaces
    ``path`` when :meth:`close` is called; on error nothing is left behind.
    """

    def __init__(self, path: str | Path, pattern: str = "{:06d}.png", temporary: Path | None = None) -> None:
        self.path = Path(path)
        self.pattern = pattern
        if temporary is None:
            self._tmp = temporary_sibling(self.path, directory=True)
        else:
            self._tmp = Path(temporary)
            discard(self._tmp)
            self._tmp.mkdir()
        self.frames_written = 0

    def write(self, image: np.ndarray, pts: int | None = None) -> None:
        """Save one ``(H, W, 3)`` uint8 RGB frame (``pts`` is accepted and ignored)."""
        target = self._tmp / self.pattern.format(self.frames_written)
        if not cv2.imwrite(str(target), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise UserError(f"cannot write {target}")
        self.frames_written += 1

    def part(self, first_frame: int, path: Path) -> _FolderPart:
        """A writer for a part of the frames (io/job.py) into the folder ``path``, numbered
        from 0; :meth:`append_part` moves them here later, numbered on."""
        return _FolderPart(path, self.pattern)

    def append_part(self, path: Path, frames: int) -> None:
        """Move a closed part's ``frames`` frames (in the folder ``path``) after this sink's."""
        for i in range(frames):
            os.replace(path / self.pattern.format(i), self._tmp / self.pattern.format(self.frames_written + i))
        self.frames_written += frames
        discard(path)

    def close(self) -> None:
        commit(self._tmp, self.path)

    def abort(self) -> None:
        discard(self._tmp)


class _FolderPart(FolderSink):
    """A :meth:`FolderSink.part`: its frames stay in its folder for ``append_part``."""

    def __init__(self, path: Path, pattern: str) -> None:
        self.path = self._tmp = Path(path)
        self.pattern = pattern
        discard(self._tmp)
        self._tmp.mkdir(parents=True)
        self.frames_written = 0

    def close(self) -> None:
        pass
