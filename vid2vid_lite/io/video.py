"""Video files through PyAV: a streaming reader (the writer is io/writer.py).

Frames are decoded in a background thread into a bounded queue (memory does not grow with the
video's length), converted to upright RGB and handed out with their presentation timestamps.
Display rotation (phone video) is applied to the pixels, so the output needs no rotation tag
and has none.  Every frame the decoder gives is handed out, including those it holds back until
the end of the stream; timestamps are made strictly increasing (a frame without one, or with one
that does not increase, as in MPEG program streams and raw elementary streams, is shown one
nominal frame after the previous; after a jump of more than a minute the frames keep their
spacing from one nominal frame on).

A header's frame count and duration are hints: a file that ends before them without an error is
read in full (``VideoSource.shortfall`` notes a large difference); only a demuxer or decoder error
is damage.  A reader that starts midway seeks where a seek on the file was proven to work
(:func:`presentation_timestamps`), else it decodes from the beginning.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import InputDamaged, UserError, ffmpeg_message
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
        UserError: the file is missing, not media, or has no video stream.
        InputDamaged: a demuxer or decoder error midway: the frames before the damage are
            yielded first, then the error is raised; ``damage`` holds the message afterwards.

    A file that simply ends before the frame count or duration its header gives is no damage:
    every frame is yielded, and where the difference exceeds :attr:`SHORTFALL_SECONDS` or
    :attr:`SHORTFALL_FRACTION` of what the header says, ``shortfall`` holds one warning line
    once iteration has reached the end (else None).
    """

    #: A longer gap between two frames (seconds) is a discontinuity, not a still picture.
    MAX_GAP = 60
    #: Headers miscount (AVIs one or two frames over, ASF durations with the preroll): a
    #: shortfall is worth a warning beyond this many seconds or this share of the header's value.
    SHORTFALL_SECONDS = 1.0
    SHORTFALL_FRACTION = 0.01

    def __init__(
        self, path: str | Path, queue_size: int = 8, start: int = 0, timestamps: list[int] | None = None
    ) -> None:
        """``start`` skips to that frame (by seeking to the key frame before it, else by decoding
        from the beginning); the frame order comes from ``timestamps``
        (:func:`presentation_timestamps`), computed if None."""
        self.path = Path(path)
        self.damage: str | None = None
        self.shortfall: str | None = None
        first, frames = self._open()
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
            has_audio=bool(self._container.streams.audio),
        )
        # pts ticks of one nominal frame: for frames whose timestamps must be made up.
        self._step = max(1, round(1 / (Fraction(rate or 25) * stream.time_base))) if stream.time_base else 1
        index, skip = 0, 0
        if start > 0:
            try:
                first, frames, index, skip = self._seek(start, timestamps, first, frames)
            except BaseException:
                self._container.close()
                raise
        self._prefetch = Prefetcher(
            lambda: self._frames(first, frames, index, skip), maxsize=queue_size, name="v2v-decode"
        )

    def _open(self) -> tuple[av.VideoFrame, Iterator[av.VideoFrame]]:
        """Open the file and decode its first frame: ``(frame, the rest)``."""
        try:
            container = av.open(str(self.path))
        except FileNotFoundError:
            raise UserError(f"input not found: {self.path}") from None
        except READ_ERRORS as err:
            raise _unreadable(self.path, err) from None
        try:
            return self._open_stream(container)
        except BaseException:
            container.close()
            raise

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
            self._promised = self._declared_span(container, stream)
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

    def _seek(self, start: int, timestamps: list[int] | None, first: av.VideoFrame, rest: Iterator[av.VideoFrame]):
        """Position the reader on frame ``start``: ``(first frame, the rest, its index, frames
        to drop)``.  By a seek where the file's timestamps allow one; where they do not, or the
        seek fails or lands past the frame, by decoding from the beginning and dropping the
        frames before ``start`` (their timestamps made up as a full read makes them)."""
        timestamps = timestamps if timestamps is not None else presentation_timestamps(self.path)
        if timestamps is None:
            return first, rest, 0, start
        if start >= len(timestamps):
            raise ValueError(f"{self.path} has {len(timestamps)} frames; cannot start at {start}")
        found = _seek_to(self._container, self._stream, timestamps[start])
        if found is not None:
            return *found, start, 0
        # The demuxer cannot seek after all (a decode error would show when read in order).
        self._container.close()
        first, rest = self._open()
        return first, rest, 0, start

    @staticmethod
    def _declared_span(container, stream) -> tuple[float, float] | None:
        """``(start, end)`` (seconds) the header promises for the video, where it says so.

        The container's duration only counts when the video is its only stream: audio may
        legitimately run longer than the video."""
        if stream.duration and stream.time_base:
            start = stream.start_time or 0
            return float(start * stream.time_base), float((start + stream.duration) * stream.time_base)
        if container.duration and len(container.streams) == 1:
            start = (container.start_time or 0) / av.time_base
            return start, start + container.duration / av.time_base
        return None

    def _shortfall(self, count: int, end: float | None) -> str | None:
        """A warning where ``count`` frames ending at ``end`` (seconds) fall well short of the
        header's frame count or duration."""
        fps = self.info.fps or 25.0
        if self._declared and self._declared - count > min(
            self.SHORTFALL_SECONDS * fps, self.SHORTFALL_FRACTION * self._declared
        ):
            return f"{self.path}: the header promised {self._declared} frames; {count} decoded"
        if self._promised is not None and end is not None:
            start, stop = self._promised
            if stop - end > min(self.SHORTFALL_SECONDS, self.SHORTFALL_FRACTION * (stop - start)):
                return f"{self.path}: the header promised {stop - start:.2f} s; frames end at {end - start:.2f} s"
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

    def _frames(
        self, first: av.VideoFrame, rest: Iterator[av.VideoFrame], index: int = 0, skip: int = 0
    ) -> Iterator[Frame]:
        """Frames from ``first`` (frame ``index``) on, but for the first ``skip`` (not converted
        to RGB); then ``shortfall`` is set."""
        frame = last = first
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
                last_pts, last = pts, frame
                if index >= skip:
                    time = float(pts * tb) if tb else None
                    yield Frame(image=self._rgb(frame), index=index, pts=pts, time=time)
                index += 1
                frame = next(rest, None)
        except READ_ERRORS as err:
            self.damage = f"{self.path} is damaged after frame {index}: {ffmpeg_message(err)}"
            raise InputDamaged(self.damage) from None
        # The frames end where the last one's display ends.
        end = float((last_pts + (last.duration or self._step)) * tb) if tb and last_pts is not None else None
        self.shortfall = self._shortfall(index, end)

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
    or two packets with the same one; and where one seek, to a key frame near the middle, does
    not decode that very frame (SWF cannot seek at all).  Such a file is read from start to end
    instead."""
    try:
        with av.open(str(path)) as container:
            if container.format.flags & _UNRELIABLE_TIMESTAMPS:
                return None
            stream = _video_stream(container)
            if stream is None:
                return None
            pts, keys = [], []
            try:
                for packet in container.demux(stream):
                    if packet.size:
                        if packet.pts is None:
                            return None
                        pts.append(packet.pts)
                        if packet.is_keyframe:
                            keys.append(packet.pts)
            except av.FFmpegError:
                pass  # damaged: the decoder reports it when it gets there
    except READ_ERRORS:
        return None
    pts.sort()
    if not keys or not all(a < b for a, b in zip(pts, pts[1:])):
        return None
    return pts if _seek_lands(path, sorted(keys)[len(keys) // 2]) else None


def _seek_to(container, stream, target: int) -> tuple[av.VideoFrame, Iterator[av.VideoFrame]] | None:
    """Seek to the key frame at or before ``target`` and decode on to the frame shown at
    ``target``: ``(that frame, the frames after it)``; None where the seek fails or lands past
    it (the frames between would be lost)."""
    try:
        container.seek(target, stream=stream, backward=True, any_frame=False)
        frames = container.decode(stream)
        for frame in frames:
            if frame.pts is not None and frame.pts >= target:
                return (frame, frames) if frame.pts == target else None
    except READ_ERRORS:
        pass
    return None


def _seek_lands(path: str | Path, target: int) -> bool:
    """Whether a seek to the key frame at ``target`` gives that very frame (typically one seek
    and a frame or two of decoding)."""
    try:
        with av.open(str(path)) as container:
            return _seek_to(container, _video_stream(container), target) is not None
    except READ_ERRORS:
        return False
