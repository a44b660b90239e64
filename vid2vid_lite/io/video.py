"""Video files through PyAV: a streaming reader and an H.264/VP9 writer that keeps timing and audio.

Reading: frames are decoded in a background thread into a bounded queue (memory does not grow
with the video's length), converted to upright RGB and handed out with their presentation
timestamps.  Display rotation (phone video) is applied to the pixels, so the output needs no
rotation tag and has none.  Every frame the decoder gives is handed out, including those it
holds back until the end of the stream; timestamps are made strictly increasing (a frame
without one, or with one that does not increase, as in MPEG program streams and raw elementary
streams, is shown one nominal frame after the previous; after a jump of more than a minute the
frames keep their spacing from one nominal frame on).

Writing: every frame is encoded with the presentation timestamp of the input frame it came from
(variable frame rate survives), at the input's size.  Audio streams of the input are copied
packet for packet, or re-encoded where the output container cannot hold them (io/audio.py).
Where the container refuses the stream setup, the writer tries again with every audio stream
re-encoded, then with a 1/90000 video time base.  The file is written under a temporary name
and renamed when complete.
"""

from __future__ import annotations

import logging
import os
import math
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import UserError, ffmpeg_message
from .audio import AudioCopier
from .base import AtomicSink, Frame, Prefetcher, VideoInfo, commit, discard, temporary_sibling
from .formats import MUXERS, WRITABLE_VIDEO_SUFFIXES

log = logging.getLogger(__name__)

_VIDEO_CODEC = {".webm": "libvpx-vp9"}  # everything else: libx264
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


def encoder_options(codec: str, quality: int, preset: str) -> dict[str, str]:
    """The encoder options for a constant quality ``quality``: x264/x265's CRF, VP9's CRF (its
    scale is x264's + 14), MPEG-4 Part 2's fixed quantiser (2-31); other codecs take none."""
    if codec in ("libx264", "libx265"):
        options = {"crf": str(quality), "preset": preset}
        return {**options, "x265-params": "log-level=error"} if codec == "libx265" else options
    if codec == "libvpx-vp9":  # constant quality mode needs b:v 0
        return {"crf": str(quality + 14), "b:v": "0", "row-mt": "1"}
    if codec == "mpeg4":
        return {"qmin": str(quality), "qmax": str(quality)}
    return {}


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


class _Clock:
    """Timestamps of the frames a writer encodes.

    Given timestamps (in the source's ``in_time_base``) must increase; they are rescaled to the
    encoder's ``time_base`` (where a rescale to a coarser base makes two equal, the later moves
    one tick on).  A frame without one is shown one nominal frame after the previous."""

    def __init__(
        self, time_base: Fraction, rate: Fraction, size: tuple[int, int], first_frame: int = 0,
        in_time_base: Fraction | None = None,
    ) -> None:
        self.time_base, self.rate, self.size = time_base, rate, size  # size: (width, height)
        self.in_time_base = in_time_base or time_base
        self._step = 1 / (rate * time_base)  # pts ticks per frame
        self._next: Fraction | int = first_frame * self._step
        self._last: int | None = None
        self._last_given: int | None = None

    def fresh(self, first_frame: int) -> _Clock:
        """A clock with the same rules, for frames from ``first_frame`` on (a segment part)."""
        return _Clock(self.time_base, self.rate, self.size, first_frame, self.in_time_base)

    def frame(self, image: np.ndarray, pts: int | None) -> av.VideoFrame:
        """An encoder frame of ``image`` at ``pts`` (or the next nominal time); the image must
        be ``(H, W, 3)`` uint8 of the video's size (an encoder would silently rescale it)."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        if image.shape[1::-1] != self.size:
            raise ValueError(f"frame is {image.shape[1]}x{image.shape[0]}, the video is {self.size[0]}x{self.size[1]}")
        if pts is None:
            pts = round(self._next)
        else:
            if self._last_given is not None and pts <= self._last_given:
                raise ValueError(f"timestamps must increase: {pts} after {self._last_given}")
            self._last_given = pts
            if self.in_time_base != self.time_base:
                pts = round(pts * self.in_time_base / self.time_base)
                if self._last is not None and pts <= self._last:
                    pts = self._last + 1
        if self._last is not None and pts <= self._last:
            raise ValueError(f"timestamps must increase: {pts} after {self._last}")
        self._last, self._next = pts, pts + self._step
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, self.time_base
        return frame


class VideoSink(AtomicSink):
    """Write RGB frames to a video file, with the timing and audio of a source.

    Args:
        path: output file; ``.mp4``, ``.mkv``, ``.mov`` (H.264) or ``.webm`` (VP9).
        width, height: frame size; odd sizes are encoded as yuv444p (yuv420p needs even sizes),
            never resized.
        fps: nominal frame rate, used for frames written without a timestamp.
        time_base: time base of the ``pts`` given to :meth:`write` (the source's).
        audio_from: a media file whose audio streams are copied into the output.
        crf: constant rate factor; 17 is visually lossless for x264 (the default, 23, costs
            0.1-0.25 dB on unchanged frames and would eat the model's gains).  For other codecs
            the constant-quality setting of :func:`encoder_options`.
        preset: the x264 speed preset.
        pix_fmt, codec: override the defaults (yuv420p/yuv444p; libx264, or VP9 for WebM),
            e.g. ``codec="ffv1", pix_fmt="bgr0"`` for a lossless RGB intermediate, or
            ``libx265`` / ``mpeg4`` (the restore task's degradations).
        keep_damaged_audio: audio that turns out damaged midway ends there with a warning,
            instead of failing the write (``run on_error=keep``).
    """

    #: The fallback video time base, where a container refuses the source's.
    SAFE_TIME_BASE = Fraction(1, 90000)

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float | None = 25.0,
        time_base: Fraction | None = None,
        audio_from: str | Path | None = None,
        crf: int = 17,
        preset: str = "medium",
        pix_fmt: str | None = None,
        codec: str | None = None,
        keep_damaged_audio: bool = False,
    ) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in WRITABLE_VIDEO_SUFFIXES:
            raise UserError(f"cannot write video {self.path}: use one of {', '.join(WRITABLE_VIDEO_SUFFIXES)}")
        rate = Fraction(fps).limit_denominator(1001) if fps else Fraction(25)
        source_tb = time_base or 1 / rate
        video = dict(format=MUXERS[suffix], codec=codec or _VIDEO_CODEC.get(suffix, "libx264"),
                     width=width, height=height, rate=rate,
                     pix_fmt=pix_fmt or ("yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"),
                     crf=crf, preset=preset)
        audio = dict(source=audio_from, suffix=suffix, keep_damaged=keep_damaged_audio)
        # The first setup the muxer accepts: as asked; every audio stream re-encoded; then also
        # a time base every container takes.
        tries = [(False, source_tb), (True, source_tb), (True, self.SAFE_TIME_BASE)]
        if not audio_from:
            tries = tries[1:]  # without audio the first two are the same
        self._tmp = temporary_sibling(self.path)
        for attempt, (encode_audio, tb) in enumerate(tries):
            try:
                self._open(video, audio, encode_audio, tb)
                break
            except av.FFmpegError as err:
                self._close_container()
                if attempt == len(tries) - 1:
                    discard(self._tmp)
                    raise UserError(f"cannot write {self.path}: {ffmpeg_message(err)}") from None
                log.info("the %s muxer refused the setup (%s): trying again", suffix, ffmpeg_message(err))
        self._clock = _Clock(tb, rate, (width, height), in_time_base=source_tb)
        self._flushed = False  # the encoder has been drained (by append): nothing more to encode
        self.frames_written = 0

    def _open(self, video: dict, audio: dict, encode_audio: bool, time_base: Fraction) -> None:
        """Open the container with its streams and write the header (where a muxer refuses)."""
        self._audio = None
        self._container = av.open(str(self._tmp), mode="w", format=video["format"])
        stream = self._container.add_stream(video["codec"], rate=video["rate"])
        stream.width, stream.height, stream.pix_fmt = video["width"], video["height"], video["pix_fmt"]
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        stream.codec_context.thread_count = codec_threads()
        options = encoder_options(stream.codec_context.name, video["crf"], video["preset"])
        stream.options = dict(options)
        self.encoder_options = options  # for parts: an opened encoder no longer lists its options
        self._video = stream
        if audio["source"]:
            self._audio = AudioCopier(audio["source"], self._container, audio["suffix"], encode_all=encode_audio,
                                      keep_damaged=audio["keep_damaged"])
        self._container.start_encoding()

    def _close_container(self) -> None:
        try:
            if self._audio is not None:
                self._audio.close()
            self._container.close()
        except Exception:  # noqa: BLE001 - the output is being discarded anyway
            pass

    def write(self, image: np.ndarray, pts: int | None = None) -> None:
        """Encode one ``(H, W, 3)`` uint8 RGB frame shown at ``pts`` (in ``time_base`` units)."""
        if self._flushed:
            raise ValueError("this video has parts appended: write to a part instead")
        frame = self._clock.frame(image, pts)
        with self._muxer_errors():
            self._mux(self._video.encode(frame))
        self.frames_written += 1

    @contextmanager
    def _muxer_errors(self) -> Iterator[None]:
        """An encoder or muxer failure (mostly a damaged input's timing or audio) as one line."""
        try:
            yield
        except av.FFmpegError as err:
            raise UserError(f"cannot write {self.path}: {ffmpeg_message(err)}") from None

    def part(self, first_frame: int = 0) -> VideoPart:
        """A writer for frames that come after all of this sink's (a later segment of the same
        video), encoded at the same time by an encoder set up like this one; :meth:`append`
        adds its packets here when both are done, without re-encoding.  ``first_frame`` is the
        index of its first frame in the video: frames written without a timestamp get the
        nominal ones from there."""
        return VideoPart(self, first_frame)

    def append(self, part: VideoPart) -> None:
        """Mux a closed part's packets after everything written here so far (the first append
        drains this sink's encoder: later frames go to parts)."""
        with self._muxer_errors():
            if not self._flushed:
                self._mux(self._video.encode(None))
                self._flushed = True
            for packet in part.packets():
                packet.stream = self._video
                self._mux([packet])
        self.frames_written += part.frames_written

    def _mux(self, packets) -> None:
        for packet in packets:
            if self._audio is not None and packet.pts is not None:
                # Keep the audio a little ahead of the video so the muxer can interleave.
                self._audio.mux_until(float(packet.pts * packet.time_base) + 1.0)
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder, finish the audio and move the file into place."""
        try:
            with self._muxer_errors():
                if not self._flushed:
                    self._mux(self._video.encode(None))
                if self._audio is not None:
                    self._audio.mux_until(math.inf)
                    self._audio.close()
                self._container.close()
        except BaseException:
            self.abort()
            raise
        commit(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the unfinished output: nothing is left behind."""
        self._close_container()
        discard(self._tmp)


class VideoPart:
    """Frames for the end of a :class:`VideoSink`, encoded now, muxed later (see
    :meth:`VideoSink.part`).

    An encoder set up exactly like the sink's (codec, options, size, pixel format, time base,
    header flags, so the bitstreams join) writes its packets to a spool file beside the output:
    each as a small header (pts, dts, keyframe, size) and its bytes.  Memory stays bounded
    however long the segment, and nothing is decoded or encoded twice.
    """

    _HEADER = struct.Struct("<qq?I")  # pts, dts, keyframe, size
    _NO_TIME = -(1 << 63)  # a missing pts or dts in the header

    def __init__(self, sink: VideoSink, first_frame: int = 0) -> None:
        main = sink._video.codec_context
        codec = av.CodecContext.create(main.name, "w")
        codec.width, codec.height, codec.pix_fmt = main.width, main.height, main.pix_fmt
        codec.time_base = main.time_base
        codec.framerate = main.framerate
        codec.flags = main.flags  # e.g. global header: no parameter sets inside the packets
        codec.thread_count = main.thread_count
        codec.options = dict(sink.encoder_options)  # the same options: the bitstreams must join
        self._codec = codec
        self._clock = sink._clock.fresh(first_frame)  # the sink's timing rules, from this frame on
        self.path = temporary_sibling(sink.path.with_suffix(".packets"))
        self._spool = open(self.path, "wb")  # noqa: SIM115 - closed by close/abort
        self.frames_written = 0

    def write(self, image: np.ndarray, pts: int | None = None) -> None:
        """Encode one ``(H, W, 3)`` uint8 RGB frame shown at ``pts`` (the sink's time base)."""
        self._store(self._codec.encode(self._clock.frame(image, pts)))
        self.frames_written += 1

    def _store(self, packets) -> None:
        for packet in packets:
            data = bytes(packet)
            times = (self._NO_TIME if t is None else t for t in (packet.pts, packet.dts))
            self._spool.write(self._HEADER.pack(*times, packet.is_keyframe, len(data)))
            self._spool.write(data)

    def close(self) -> None:
        """Drain the encoder into the spool file (the part stays on disk for :meth:`packets`)."""
        self._store(self._codec.encode(None))
        self._spool.close()

    def packets(self) -> Iterator[av.Packet]:
        """The stored packets in order, in the sink's time base; the spool file is removed
        after the last one."""
        with open(self.path, "rb") as spool:
            while header := spool.read(self._HEADER.size):
                pts, dts, keyframe, size = self._HEADER.unpack(header)
                packet = av.Packet(spool.read(size))
                packet.pts, packet.dts = (None if t == self._NO_TIME else t for t in (pts, dts))
                packet.is_keyframe = keyframe
                packet.time_base = self._codec.time_base
                yield packet
        discard(self.path)

    def abort(self) -> None:
        self._spool.close()
        discard(self.path)
