"""Video files through PyAV: a streaming reader (the writer is io/writer.py).

Frames are decoded in a background thread into a bounded queue (memory does not grow with the
video's length), converted to upright RGB and handed out with their presentation timestamps.
Display rotation (phone video) is applied to the pixels, so the output needs no rotation tag
and has none.  Every frame the decoder gives is handed out, including those it holds back until
the end of the stream; timestamps are made strictly increasing (a frame without one, or with one
that does not increase, as in MPEG program streams and raw elementary streams, is shown one
nominal frame after the previous; after a jump of more than a minute the frames keep their
spacing from one nominal frame on).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import UserError, ffmpeg_message
from .base import Frame, Prefetcher, VideoInfo


#: Demuxer flags (AVFMT_NOTIMESTAMPS, AVFMT_TS_DISCONT): formats whose timestamps are guessed or
#: may jump (raw elementary streams, MPEG program and transport streams).
_UNRELIABLE_TIMESTAMPS = 0x80 | 0x200
#: Decoder and demuxer errors, and PyAV's own complaints about what it read.
READ_ERRORS = (av.FFmpegError, ValueError, OverflowError, UnicodeDecodeError, MemoryError)


def codec_threads() -> int:
    """Threads for each FFmpeg decoder/encoder: 0 (FFmpeg's choice) on machines with more than
    four cores, else 1.  On a small CPU the model needs every core; x264's own pool of threads
    oversubscribes them and stalls torch's OpenMP workers (measured on 2 cores at 640x360:
    end-to-end 6.6 fps with x264's default threads, 16.6 fps with one)."""
    return 0 if (os.cpu_count() or 1) > 4 else 1


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display rotation (degrees counter-clockwise, FFmpeg's convention)."""
    k = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


def _video_stream(container) -> av.video.stream.VideoStream | None:
    """The first video stream whose codec FFmpeg knows (the one every reader uses)."""
    return next((s for s in container.streams.video if s.codec_context is not None), None)


def _unreadable(path: Path, err: Exception) -> UserError:
    return UserError(
        f"{path} cannot be read as video ({ffmpeg_message(err)}): it is not media, or it is "
        "damaged or truncated; give a video file or a folder of images"
    )


class VideoSource:
    """Stream the frames of a video file.

    Example:
        >>> with VideoSource("clip.mp4") as src:  # doctest: +SKIP
        ...     for frame in src: frame.image.shape  # (H, W, 3) uint8

    Raises:
        UserError: the file is missing, not media, has no video stream, or is damaged.
            For a damaged file the frames before the damage are yielded first, then the error
            is raised; ``damage`` holds the message afterwards.
    """

    #: A longer gap between two frames (seconds) is a discontinuity, not a still picture.
    MAX_GAP = 60

    def __init__(
        self, path: str | Path, queue_size: int = 8, start: int = 0, timestamps: list[int] | None = None
    ) -> None:
        """``start`` skips to that frame (by seeking to the key frame before it); the frame
        order comes from ``timestamps`` (:func:`presentation_timestamps`), computed if None."""
        self.path = Path(path)
        self.damage: str | None = None
        try:
            container = av.open(str(self.path))
        except FileNotFoundError:
            raise UserError(f"input not found: {self.path}") from None
        except READ_ERRORS as err:
            raise _unreadable(self.path, err) from None
        try:
            first, frames = self._open_stream(container)
        except BaseException:
            container.close()
            raise
        stream = self._stream
        rotation = round(first.rotation or 0) % 360  # 0, 90, 180 or 270, counter-clockwise
        rate = stream.average_rate or stream.guessed_rate
        height, width = first.height, first.width
        self._decoded_size = (width, height)  # every frame is converted to the first's size
        if round(rotation / 90) % 2:
            height, width = width, height
        self.info = VideoInfo(
            path=self.path,
            kind="video",
            width=width,
            height=height,
            fps=float(rate) if rate else None,
            num_frames=self._declared,
            time_base=stream.time_base,
            rotation=rotation,
            has_audio=bool(container.streams.audio),
        )
        # pts ticks of one nominal frame: for frames whose timestamps must be made up.
        self._step = max(1, round(1 / (Fraction(rate or 25) * stream.time_base))) if stream.time_base else 1
        index = 0
        if start > 0:
            first, frames, index = self._seek(start, timestamps)
        self._prefetch = Prefetcher(
            lambda: self._frames(first, frames, index), maxsize=queue_size, name="v2v-decode"
        )

    def _open_stream(self, container) -> tuple[av.VideoFrame, Iterator[av.VideoFrame]]:
        """Set up the first video stream and decode its first frame: ``(frame, the rest)``."""
        if not container.streams.video:
            raise UserError(f"{self.path} has no video stream; give a video file or a folder of images")
        stream = _video_stream(container)
        if stream is None:
            raise UserError(f"{self.path}: its video codec is unknown to FFmpeg (or the header is damaged)")
        self._container, self._stream = container, stream
        try:
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = codec_threads()
            self._declared = stream.frames or None
            self._expected_end = self._declared_end(container, stream)
            frames = self._decode()
            first = next(frames, None)
        except READ_ERRORS as err:
            raise UserError(
                f"{self.path}: its {stream.codec_context.name} video cannot be decoded "
                f"({ffmpeg_message(err)}); FFmpeg lacks the codec or the file is damaged"
            ) from None
        if first is None:
            raise UserError(f"{self.path} has a video stream but no frame could be decoded")
        return first, frames

    def _seek(self, start: int, timestamps: list[int] | None):
        """Position the decoder on frame ``start``: ``(that frame, the rest, start)``."""
        timestamps = timestamps if timestamps is not None else presentation_timestamps(self.path)
        if timestamps is None:
            raise ValueError(f"{self.path} has no frame-accurate timestamps to seek by")
        if start >= len(timestamps):
            raise ValueError(f"{self.path} has {len(timestamps)} frames; cannot start at {start}")
        target = timestamps[start]
        try:
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
            frames = self._decode()
            for frame in frames:
                if frame.pts is not None and frame.pts >= target:
                    return frame, frames, start
        except READ_ERRORS as err:
            raise UserError(f"{self.path} is damaged: frame {start} cannot be decoded ({ffmpeg_message(err)})") from None
        raise UserError(f"{self.path} is damaged: frame {start} cannot be decoded")

    @staticmethod
    def _declared_end(container, stream) -> float | None:
        """End time (seconds) the header promises for the video, where it says so.

        Used to notice truncated files whose header has no frame count (Matroska).  The
        container's duration only counts when the video is its only stream: audio may
        legitimately run longer than the video."""
        if stream.duration and stream.time_base:
            start = stream.start_time or 0
            return float((start + stream.duration) * stream.time_base)
        if container.duration and len(container.streams) == 1:
            return (container.start_time or 0) / av.time_base + container.duration / av.time_base
        return None

    def _decode(self) -> Iterator[av.VideoFrame]:
        """Decoded frames; demux/decode errors surface as exceptions of PyAV."""
        return self._container.decode(self._stream)

    def _rgb(self, frame: av.VideoFrame) -> np.ndarray:
        """Upright RGB at the first frame's size (a stream may change size midway)."""
        width, height = self._decoded_size
        if (frame.width, frame.height) != (width, height):
            frame = frame.reformat(width=width, height=height)
        return _upright(frame.to_ndarray(format="rgb24"), self.info.rotation)

    def _frames(self, first: av.VideoFrame, rest: Iterator[av.VideoFrame], index: int = 0) -> Iterator[Frame]:
        frame = first
        tb = self._stream.time_base
        last_pts = None
        shift = 0  # added to every later timestamp after a jump
        jump = round(self.MAX_GAP / tb) if tb else None
        try:
            while frame is not None:
                pts = None if frame.pts is None else frame.pts + shift
                if pts is None or (last_pts is not None and pts <= last_pts):
                    # Missing or not increasing (MPEG-PS, raw streams): one nominal frame later.
                    pts = 0 if last_pts is None else last_pts + self._step
                elif last_pts is not None and jump and pts - last_pts > jump:
                    # A jump forward of more than MAX_GAP (a damaged or spliced file): the
                    # frames from here on keep their spacing, one nominal frame on.
                    shift -= pts - last_pts - self._step
                    pts = last_pts + self._step
                last_pts = pts
                time = float(pts * tb) if tb else None
                yield Frame(image=self._rgb(frame), index=index, pts=pts, time=time)
                index += 1
                frame = next(rest, None)
        except READ_ERRORS as err:
            self.damage = f"{self.path} is damaged after frame {index}: {ffmpeg_message(err)}"
            raise UserError(self.damage) from None
        if self._declared and index < self._declared:
            self.damage = (
                f"{self.path} ends early: {index} of {self._declared} frames could be decoded "
                "(truncated or damaged file)"
            )
            raise UserError(self.damage)
        last_time = float(last_pts * tb) if tb and last_pts is not None else None
        if self._expected_end is not None and last_time is not None:
            # Allow the last frame's own duration (a few frame intervals at low frame rates).
            slack = 3.0 / (self.info.fps or 10.0) + 0.05
            if last_time + slack < self._expected_end:
                self.damage = (
                    f"{self.path} ends early: frames stop at {last_time:.2f} s of "
                    f"{self._expected_end:.2f} s (truncated or damaged file)"
                )
                raise UserError(self.damage)

    def __iter__(self) -> Iterator[Frame]:
        return iter(self._prefetch)

    def close(self) -> None:
        self._prefetch.close()
        self._container.close()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def presentation_timestamps(path: str | Path) -> list[int] | None:
    """The presentation timestamps of every video frame, in display order, from the packets
    alone (no decoding): a fast first pass that gives the frame count and allows seeking.

    None where the packets' timestamps cannot be trusted to name each frame once: a format
    whose timestamps are guessed or may jump (raw streams, MPEG-PS/TS), a packet without one,
    or two packets with the same one.  Such a file is read from start to end instead."""
    try:
        with av.open(str(path)) as container:
            if container.format.flags & _UNRELIABLE_TIMESTAMPS:
                return None
            stream = _video_stream(container)
            if stream is None:
                return None
            pts = []
            try:
                for packet in container.demux(stream):
                    if packet.size:
                        if packet.pts is None:
                            return None
                        pts.append(packet.pts)
            except av.FFmpegError:
                pass  # damaged: the decoder reports it when it gets there
    except READ_ERRORS:
        return None
    pts.sort()
    return pts if all(a < b for a, b in zip(pts, pts[1:])) else None
