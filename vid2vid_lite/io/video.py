"""Video files through PyAV: a streaming reader and an H.264/VP9 writer that keeps timing and audio.

Reading: frames are decoded in a background thread into a bounded queue (memory does not grow
with the video's length), converted to upright RGB and handed out with their presentation
timestamps.  Display rotation (phone video) is applied to the pixels, so the output needs no
rotation tag and has none.

Writing: every frame is encoded with the presentation timestamp of the input frame it came from
(variable frame rate survives), at the input's size.  Audio streams of the input are copied
packet for packet; where the output container cannot hold an audio codec the stream is
re-encoded to AAC (or Opus for WebM) with a warning.  The file is written under a temporary
name and renamed when complete.
"""

from __future__ import annotations

import logging
import os
import math
import struct
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import UserError
from .base import AtomicSink, Frame, Prefetcher, VideoInfo, commit, discard, temporary_sibling

log = logging.getLogger(__name__)

#: Suffixes written as video; anything FFmpeg can demux is readable.
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm")
_VIDEO_CODEC = {".webm": "libvpx-vp9"}  # everything else: libx264
_FALLBACK_AUDIO = {".webm": "libopus"}  # everything else: aac


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


def _ffmpeg_message(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err)


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
        except (av.FFmpegError, UnicodeDecodeError) as err:
            raise UserError(
                f"{self.path} cannot be read as video ({_ffmpeg_message(err)}): it is not media, "
                "or it is damaged or truncated; give a video file or a folder of images"
            ) from None
        if not container.streams.video:
            container.close()
            raise UserError(f"{self.path} has no video stream; give a video file or a folder of images")
        self._container = container
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = codec_threads()
        self._stream = stream
        self._declared = stream.frames or None
        self._expected_end = self._declared_end(container, stream)
        frames = self._decode()
        first = next(frames, None)
        if first is None:
            container.close()
            raise UserError(f"{self.path} has a video stream but no frame could be decoded")
        rotation = round(first.rotation or 0) % 360  # 0, 90, 180 or 270, counter-clockwise
        rate = stream.average_rate or stream.guessed_rate
        height, width = first.height, first.width
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
        index = 0
        if start > 0:
            first, frames, index = self._seek(start, timestamps)
        self._prefetch = Prefetcher(
            lambda: self._frames(first, frames, index), maxsize=queue_size, name="v2v-decode"
        )

    def _seek(self, start: int, timestamps: list[int] | None):
        """Position the decoder on frame ``start``: ``(that frame, the rest, start)``."""
        timestamps = timestamps if timestamps is not None else presentation_timestamps(self.path)
        if start >= len(timestamps):
            raise ValueError(f"{self.path} has {len(timestamps)} frames; cannot start at {start}")
        target = timestamps[start]
        self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        frames = self._decode()
        for frame in frames:
            if frame.pts is not None and frame.pts >= target:
                return frame, frames, start
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

    def _frames(self, first: av.VideoFrame, rest: Iterator[av.VideoFrame], index: int = 0) -> Iterator[Frame]:
        frame = first
        tb = self._stream.time_base
        last_time = None
        try:
            while frame is not None:
                image = _upright(frame.to_ndarray(format="rgb24"), self.info.rotation)
                time = float(frame.pts * tb) if frame.pts is not None and tb else None
                last_time = time
                yield Frame(image=image, index=index, pts=frame.pts, time=time)
                index += 1
                frame = next(rest, None)
        except av.FFmpegError as err:
            self.damage = f"{self.path} is damaged after frame {index}: {_ffmpeg_message(err)}"
            raise UserError(self.damage) from None
        if self._declared and index < self._declared:
            self.damage = (
                f"{self.path} ends early: {index} of {self._declared} frames could be decoded "
                "(truncated or damaged file)"
            )
            raise UserError(self.damage)
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


def presentation_timestamps(path: str | Path) -> list[int]:
    """The presentation timestamps of every video frame, in display order, from the packets
    alone (no decoding): a fast first pass that gives the frame count and allows seeking."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = []
        try:
            for packet in container.demux(stream):
                if packet.pts is not None and packet.size:
                    pts.append(packet.pts)
        except av.FFmpegError:
            pass  # damaged: the decoder reports it when it gets there
    return sorted(pts)


class _Clock:
    """Timestamps of the frames a writer encodes: given ones must increase; a frame without one
    is shown one nominal frame after the previous."""

    def __init__(self, time_base: Fraction, rate: Fraction, size: tuple[int, int], first_frame: int = 0) -> None:
        self.time_base, self.rate, self.size = time_base, rate, size  # size: (width, height)
        self._step = 1 / (rate * time_base)  # pts ticks per frame
        self._next: Fraction | int = first_frame * self._step
        self._last: int | None = None

    def frame(self, image: np.ndarray, pts: int | None) -> av.VideoFrame:
        """An encoder frame of ``image`` at ``pts`` (or the next nominal time); the image must
        be ``(H, W, 3)`` uint8 of the video's size (an encoder would silently rescale it)."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        if image.shape[1::-1] != self.size:
            raise ValueError(f"frame is {image.shape[1]}x{image.shape[0]}, the video is {self.size[0]}x{self.size[1]}")
        if pts is None:
            pts = round(self._next)
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
            0.1-0.25 dB on unchanged frames and would eat the model's gains).
        preset: the x264 speed preset.
        pix_fmt, codec: override the defaults (yuv420p/yuv444p; libx264, or VP9 for WebM),
            e.g. ``codec="ffv1", pix_fmt="bgr0"`` for a lossless RGB intermediate.
    """

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
    ) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            raise UserError(f"cannot write video {self.path}: use one of {', '.join(VIDEO_SUFFIXES)}")
        self._tmp = temporary_sibling(self.path)
        self._container = av.open(str(self._tmp), mode="w", format=self._format_name(suffix))
        rate = Fraction(fps).limit_denominator(1001) if fps else Fraction(25)
        self._time_base = time_base or 1 / rate
        self._clock = _Clock(self._time_base, rate, (width, height))
        stream = self._container.add_stream(codec or _VIDEO_CODEC.get(suffix, "libx264"), rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt or ("yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p")
        stream.time_base = self._time_base
        stream.codec_context.time_base = self._time_base
        stream.codec_context.thread_count = codec_threads()
        if stream.codec_context.name == "libx264":
            stream.options = {"crf": str(crf), "preset": preset}
        elif stream.codec_context.name == "libvpx-vp9":  # constant quality mode needs b:v 0
            stream.options = {"crf": str(crf + 14), "b:v": "0", "row-mt": "1"}
        self._video = stream
        self._audio = _AudioCopier(audio_from, self._container, suffix) if audio_from else None
        self._flushed = False  # the encoder has been drained (by append): nothing more to encode
        self.frames_written = 0

    @staticmethod
    def _format_name(suffix: str) -> str:
        return {".mkv": "matroska", ".webm": "webm", ".mov": "mov"}.get(suffix, "mp4")

    def write(self, image: np.ndarray, pts: int | None = None) -> None:
        """Encode one ``(H, W, 3)`` uint8 RGB frame shown at ``pts`` (in ``time_base`` units)."""
        if self._flushed:
            raise ValueError("this video has parts appended: write to a part instead")
        self._mux(self._video.encode(self._clock.frame(image, pts)))
        self.frames_written += 1

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
        try:
            if self._audio is not None:
                self._audio.close()
            self._container.close()
        except Exception:  # noqa: BLE001 - the output is being discarded anyway
            pass
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
        codec.options = dict(sink._video.options)
        self._codec = codec
        clock = sink._clock  # the sink's timing rules, from this part's first frame on
        self._clock = _Clock(clock.time_base, clock.rate, clock.size, first_frame)
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


class _AudioCopier:
    """Copy (or, where the container refuses the codec, re-encode) every audio stream of a file."""

    def __init__(self, source: str | Path, output: av.container.OutputContainer, suffix: str) -> None:
        self._input = av.open(str(source))
        self._streams = {}  # input stream index -> (output stream, transcoder or None)
        supported = output.supported_codecs
        for stream in self._input.streams.audio:
            if stream.codec_context.name in supported:
                self._streams[stream.index] = (output.add_stream_from_template(stream), None)
            else:
                codec = _FALLBACK_AUDIO.get(suffix, "aac")
                log.warning(
                    "audio codec %s does not fit a %s file: re-encoding it to %s",
                    stream.codec_context.name, suffix, codec,
                )
                # Opus only takes 48 kHz; AAC keeps the source rate.
                rate = 48000 if codec == "libopus" else stream.codec_context.sample_rate
                out = output.add_stream(codec, rate=rate)
                out.layout = stream.codec_context.layout
                self._streams[stream.index] = (out, _Transcoder(stream, out))
        self._packets = (
            self._input.demux(*self._input.streams.audio) if self._streams else iter(())
        )
        self._pending = None
        self._output = output

    def mux_until(self, seconds: float) -> None:
        """Mux the audio packets that start before ``seconds``."""
        while True:
            packet = self._pending or next(self._packets, None)
            self._pending = None
            if packet is None:
                if seconds == math.inf:
                    for out, transcoder in self._streams.values():
                        if transcoder:
                            for p in transcoder.flush():
                                self._output.mux(p)
                return
            if packet.pts is not None and float(packet.pts * packet.time_base) > seconds:
                self._pending = packet
                return
            out, transcoder = self._streams[packet.stream.index]
            if transcoder is not None:
                for p in transcoder.feed(packet):
                    self._output.mux(p)
            elif packet.dts is not None:  # the demuxer's final empty packet has none
                packet.stream = out
                self._output.mux(packet)

    def close(self) -> None:
        self._input.close()


class _Transcoder:
    """Decode an audio stream and re-encode it for an output stream."""

    def __init__(self, stream, out) -> None:
        self._out = out
        # Encoders take fixed-size frames: 1024 samples for AAC, 960 (20 ms) for Opus.
        frame_size = 960 if out.codec_context.name == "libopus" else 1024
        self._resampler = av.AudioResampler(
            format=out.codec_context.format, layout=out.codec_context.layout,
            rate=out.codec_context.sample_rate, frame_size=frame_size,
        )

    def feed(self, packet):
        for frame in packet.decode():
            for resampled in self._resampler.resample(frame):
                yield from self._out.encode(resampled)

    def flush(self):
        for resampled in self._resampler.resample(None):
            yield from self._out.encode(resampled)
        yield from self._out.encode(None)


def audio_fits(source: str | Path, suffix: str) -> bool:
    """True where every audio stream of ``source`` can be copied into a ``suffix`` file."""
    formats = {".mkv": "matroska", ".webm": "webm", ".mov": "mov"}
    with av.open(str(source)) as inp:
        codecs = [s.codec_context.name for s in inp.streams.audio]
    if not codecs:
        return True
    probe = av.open(os.devnull, mode="w", format=formats.get(suffix, "mp4"))
    try:
        return all(c in probe.supported_codecs for c in codecs)
    finally:
        probe.close()
