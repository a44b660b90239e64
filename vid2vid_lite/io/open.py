"""One entry point for any source and any sink: a video file or a folder of frames."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import UserError
from .base import VideoInfo
from .frames import FolderSink, FolderSource
from .formats import WRITABLE_VIDEO_SUFFIXES
from .video import VideoSource, presentation_timestamps
from .writer import VideoSink

Source = VideoSource | FolderSource
Sink = VideoSink | FolderSink


def is_video_path(path: str | Path) -> bool:
    """True where ``path`` names a video file we write (by its suffix)."""
    return Path(path).suffix.lower() in WRITABLE_VIDEO_SUFFIXES


def open_source(
    path: str | Path, queue_size: int = 8, start: int = 0, timestamps: list[int] | None = None
) -> Source:
    """Open a video file or a frame folder for streaming from frame ``start``; raises
    :class:`UserError` on bad input.  ``timestamps`` (:func:`frame_timestamps`) saves a video
    reader the scan it needs to seek."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"input not found: {path}")
    if path.is_dir():
        return FolderSource(path, queue_size=queue_size, start=start)
    return VideoSource(path, queue_size=queue_size, start=start, timestamps=timestamps)


def frame_timestamps(path: str | Path) -> list[int] | None:
    """Every frame's presentation timestamp of a video, where seeking by them is frame-accurate
    (None for a frame folder, and for a video whose timestamps cannot be trusted: it is read from
    start to end)."""
    return None if Path(path).is_dir() else presentation_timestamps(path)


def check_writable(path: Path) -> None:
    """Fail early, with a clear message, where ``path`` cannot be written."""
    parent = path.parent
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create output folder {parent}: {err.strerror}") from None
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"output folder {parent} is not writable; choose another output=")
    if path.exists() and path.is_dir() != (not is_video_path(path)):
        kind = "a folder" if path.is_dir() else "a file"
        raise UserError(f"output {path} exists and is {kind}; choose another output=")


def open_sink(
    path: str | Path,
    like: VideoInfo | None = None,
    *,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    crf: int = 17,
    preset: str = "medium",
    codec: str | None = None,
    copy_audio: bool = True,
    keep_damaged_audio: bool = False,
    temporary: Path | None = None,
) -> Sink:
    """Open an atomic writer: a video for a video suffix, otherwise a folder of PNGs.

    ``like`` gives size, frame rate, time base and audio source (a video input's audio is
    copied when ``copy_audio``); ``width``/``height``/``fps`` override it.  ``codec`` replaces
    the suffix's video codec (e.g. ``libx265``, ``mpeg4``; ``crf`` is then its quality setting).  ``keep_damaged_audio``:
    audio damaged midway ends there with a warning instead of failing the write.  ``temporary``:
    where the output is written until it is complete (in a job folder); None: beside ``path``.
    """
    path = Path(path)
    check_writable(path)
    if not is_video_path(path):
        return FolderSink(path, temporary=temporary)
    width = width or (like.width if like else None)
    height = height or (like.height if like else None)
    if not width or not height:
        raise ValueError("open_sink needs a size: pass like= or width= and height=")
    audio = like.path if like and like.kind == "video" and like.has_audio and copy_audio else None
    return VideoSink(
        path,
        width=width,
        height=height,
        fps=fps or (like.fps if like else None) or 25.0,
        time_base=like.time_base if like and like.kind == "video" else None,
        audio_from=audio,
        crf=crf,
        preset=preset,
        codec=codec,
        keep_damaged_audio=keep_damaged_audio,
        temporary=temporary,
    )


def read_video(path: str | Path) -> tuple[np.ndarray, VideoInfo]:
    """All frames of a (short) clip as ``(T, H, W, 3)`` uint8, with its info."""
    with open_source(path) as source:
        frames = [frame.image for frame in source]
        return np.stack(frames), source.info


def write_video(
    path: str | Path, frames: np.ndarray | Iterable[np.ndarray], fps: float = 25.0, crf: int = 17
) -> Path:
    """Write RGB frames (``(T, H, W, 3)`` uint8 or an iterable of ``(H, W, 3)``) to a video or
    a frame folder."""
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("write_video needs at least one frame")
    with open_sink(path, width=first.shape[1], height=first.shape[0], fps=fps, crf=crf) as sink:
        sink.write(first)
        for image in frames:
            sink.write(image)
    return Path(path)
