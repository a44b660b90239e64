"""Video files through PyAV: an H.264/VP9 writer that keeps timing and audio (the reader is
io/video.py).

Every frame is encoded with the presentation timestamp of the input frame it came from (variable
frame rate survives), at the input's size.  Audio streams of the input are copied packet for
packet, or re-encoded where the output container cannot hold them (io/audio.py).  Where the
container refuses the stream setup, the writer tries again with every audio stream re-encoded,
then with a 1/90000 video time base.  The file is written under a temporary name and renamed
when complete.
"""

from __future__ import annotations

import logging
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
from .base import AtomicSink, commit, discard, temporary_sibling
from .formats import MUXERS, WRITABLE_VIDEO_SUFFIXES
from .video import codec_threads

log = logging.getLogger(__name__)

_VIDEO_CODEC = {".webm": "libvpx-vp9"}  # everything else: libx264


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
        """A clock with the same rules, for frames from ``first_frame`` on (a part of the video)."""
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
        temporary: where the file is written until :meth:`close` renames it (in a job folder,
            io/job.py; same suffix); None: a fresh temporary name beside ``path``.
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
        temporary: Path | None = None,
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
        self._tmp = temporary_sibling(self.path) if temporary is None else Path(temporary)
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

    def part(self, first_frame: int, path: Path) -> VideoPart:
        """A writer for frames ``first_frame`` on (a part of the video, io/job.py), encoded into
        the packet file ``path`` by an encoder set up like this one's; :meth:`append_part`
        adds its packets here later, without re-encoding.  Frames written without a timestamp
        get the nominal ones from ``first_frame`` on."""
        return VideoPart(self, first_frame, path)

    def append_part(self, path: Path, frames: int) -> None:
        """Mux the packets of a closed part (its packet file ``path``, ``frames`` frames) after
        everything written here so far; the first append drains this sink's own encoder, so
        later frames must come as parts too."""
        with self._muxer_errors():
            if not self._flushed:
                self._mux(self._video.encode(None))
                self._flushed = True
            for packet in VideoPart.read(path, self._video.codec_context.time_base):
                packet.stream = self._video
                self._mux([packet])
        self.frames_written += frames

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
    header flags, so the bitstreams join) writes its packets to a packet file: each as a small
    header (pts, dts, keyframe, size) and its bytes.  Memory stays bounded however long the
    part, nothing is decoded or encoded twice, and the file outlives the process (a continued
    job joins the parts an earlier run wrote).
    """

    _HEADER = struct.Struct("<qq?I")  # pts, dts, keyframe, size
    _NO_TIME = -(1 << 63)  # a missing pts or dts in the header

    def __init__(self, sink: VideoSink, first_frame: int, path: Path) -> None:
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
        self.path = Path(path)
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
        """Drain the encoder into the packet file, which stays for :meth:`read`, and free the
        encoder."""
        self._store(self._codec.encode(None))
        self._spool.close()
        self._codec = None

    @classmethod
    def read(cls, path: Path, time_base: Fraction) -> Iterator[av.Packet]:
        """The packets of a closed part's file, in order, in ``time_base`` (the sink's)."""
        with open(path, "rb") as spool:
            while header := spool.read(cls._HEADER.size):
                pts, dts, keyframe, size = cls._HEADER.unpack(header)
                packet = av.Packet(spool.read(size))
                packet.pts, packet.dts = (None if t == cls._NO_TIME else t for t in (pts, dts))
                packet.is_keyframe = keyframe
                packet.time_base = time_base
                yield packet

    def abort(self) -> None:
        self._spool.close()
        discard(self.path)
