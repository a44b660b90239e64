"""The audio of an output video: every audio stream of the input, copied packet for packet where
the output container can hold its codec, otherwise decoded and re-encoded.

Re-encoding goes through PyAV's resampler to what the target encoder takes (AAC for MP4, MOV and
Matroska; Opus for WebM): its sample format, the nearest sample rate it supports and a standard
channel layout, whatever the source had (wmav2, amr-nb, ac3/eac3, mp2, cook, vorbis, PCM
variants, "2 channels" layouts without a channel order, ...).
"""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path

import av

from ..errors import UserError, ffmpeg_message
from .formats import MUXERS

log = logging.getLogger(__name__)

_ENCODER = {".webm": "libopus"}  # everything else: aac
#: Channel layouts the encoders take, by channel count (more channels are mixed down to 7.1).
_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def audio_fits(source: str | Path, suffix: str, packets: int = 4) -> bool:
    """True where every audio stream of ``source`` can be copied into a ``suffix`` file: the
    muxer lists each codec *and* writes a short file with the first ``packets`` packets of each
    stream, header to trailer, in memory (MP4 lists PCM but refuses most of it at the trailer;
    a codec tag of the source container can be refused at the header)."""
    with av.open(str(source)) as inp:
        streams = usable_audio(inp)
        if not streams:
            return True
        probe = av.open(io.BytesIO(), mode="w", format=MUXERS.get(suffix, "mp4"))
        try:
            if not all(s.codec_context.name in probe.supported_codecs for s in streams):
                return False
            outs = {s.index: probe.add_stream_from_template(s) for s in streams}
            probe.start_encoding()
            left = dict.fromkeys(outs, packets)
            for packet in inp.demux(*streams):
                if packet.dts is None or not left[packet.stream.index]:
                    continue
                left[packet.stream.index] -= 1
                packet.stream = outs[packet.stream.index]
                probe.mux(packet)
                if not any(left.values()):
                    break
            probe.close()
            return True
        except (av.FFmpegError, ValueError):
            return False
        finally:
            try:
                probe.close()
            except av.FFmpegError:
                pass


def usable_audio(container: av.container.InputContainer) -> list[av.audio.stream.AudioStream]:
    """The audio streams FFmpeg knows the codec of (a damaged header can name none)."""
    return [s for s in container.streams.audio if s.codec_context is not None and s.codec_context.sample_rate]


def _target_rate(encoder: str, rate: int) -> int:
    """The sample rate an encoder supports that is nearest to ``rate``."""
    rates = av.codec.Codec(encoder, "w").audio_rates
    return min(rates, key=lambda r: (abs(r - rate), -r)) if rates and rate not in rates else rate


class AudioCopier:
    """Copy (or, where the container refuses the codec, re-encode) every audio stream of a file
    into ``output``, interleaved with the video by :meth:`mux_until`.

    ``encode_all`` re-encodes every stream (the writer's second try, where a copy that the
    muxer seemed to accept failed at its header).  ``keep_damaged``: a demux or decode error
    ends the audio there with a warning instead of failing (``run on_error=keep``).
    """

    def __init__(
        self,
        source: str | Path,
        output: av.container.OutputContainer,
        suffix: str,
        encode_all: bool = False,
        keep_damaged: bool = False,
    ) -> None:
        self.source = Path(source)
        self._input = av.open(str(source))
        self._output = output
        self._keep_damaged = keep_damaged
        self._streams = {}  # input stream index -> (output stream, transcoder or None)
        audio = usable_audio(self._input)
        for left_out in set(self._input.streams.audio) - set(audio):
            log.warning("%s: audio stream %d has no known codec or sample rate: left out", self.source, left_out.index)
        copy = not encode_all and audio_fits(source, suffix)
        for stream in audio:
            if copy:
                self._streams[stream.index] = (output.add_stream_from_template(stream), None)
                continue
            encoder = _ENCODER.get(suffix, "aac")
            log.warning("audio codec %s does not fit a %s file: re-encoding it to %s",
                        stream.codec_context.name, suffix, encoder)
            self._streams[stream.index] = (None, _Transcoder(stream, output, encoder))
        self._packets = self._input.demux(*audio) if audio else iter(())
        self._pending = None
        self._last: dict[int, int] = {}  # input stream index -> earliest dts for its next copied packet

    def _damaged(self, err: Exception) -> None:
        message = f"{self.source} is damaged in its audio: {ffmpeg_message(err)}"
        if not self._keep_damaged:
            raise UserError(message) from None
        log.warning("%s; the audio ends there", message)
        self._packets, self._pending = iter(()), None

    def _next(self) -> av.Packet | None:
        try:
            return next(self._packets, None)
        except av.FFmpegError as err:
            self._damaged(err)
            return None

    def mux_until(self, seconds: float) -> None:
        """Mux the audio packets that start before ``seconds`` (all that are left for inf)."""
        while True:
            packet = self._pending or self._next()
            self._pending = None
            if packet is None:
                if seconds == math.inf:
                    for _, transcoder in self._streams.values():
                        if transcoder is not None:
                            self._output.mux(transcoder.flush())
                return
            if packet.pts is not None and float(packet.pts * packet.time_base) > seconds:
                self._pending = packet
                return
            out, transcoder = self._streams[packet.stream.index]
            if transcoder is not None:
                try:
                    self._output.mux(transcoder.feed(packet))
                except av.FFmpegError as err:
                    self._damaged(err)
            elif packet.dts is not None:  # the demuxer's final empty packet has none
                if packet.duration and not 0 < packet.duration < 1 << 31:
                    packet.duration = 0  # Ogg's trimmed last packet says -640 as unsigned: unknown
                last = self._last.get(packet.stream.index)
                if last is not None and packet.dts < last:
                    # Repeated or backward times (RealMedia, damaged files): muxers refuse
                    # them, so the packet follows the previous one by that one's duration.
                    packet.pts = packet.dts = last
                self._last[packet.stream.index] = packet.dts + max(packet.duration or 0, 1)
                packet.stream = out
                try:
                    self._output.mux(packet)
                except av.FFmpegError as err:
                    self._damaged(err)

    def close(self) -> None:
        self._input.close()


class _Transcoder:
    """Decode an audio stream and re-encode it for a new output stream."""

    #: Packets that fail to decode in a row before the stream counts as damaged.
    MAX_BAD_PACKETS = 8

    def __init__(self, stream, output: av.container.OutputContainer, encoder: str) -> None:
        source = stream.codec_context
        rate = _target_rate(encoder, source.sample_rate or 48000)
        channels = min(max(source.channels or 2, 1), 8)
        layout = _LAYOUTS[channels if encoder == "aac" or channels <= 2 else 2]  # Opus: mono/stereo
        out = output.add_stream(encoder, rate=rate)
        out.layout = layout
        out.format = av.codec.Codec(encoder, "w").audio_formats[0].name
        self._out = out
        self._bad = 0
        self._offset: int | None = None  # samples before the first one (the source's start)
        # Encoders take fixed-size frames: 1024 samples for AAC, 960 (20 ms at 48 kHz) for Opus.
        frame_size = 960 * rate // 48000 if encoder == "libopus" else 1024
        self._resampler = av.AudioResampler(format=out.format, layout=layout, rate=rate, frame_size=frame_size)

    def feed(self, packet: av.Packet) -> list[av.Packet]:
        """The encoded packets for one input packet.  A packet that does not decode is dropped,
        as FFmpeg's own tools do; the error is raised once ``MAX_BAD_PACKETS`` fail in a row."""
        try:
            frames = packet.decode()
        except av.FFmpegError:
            self._bad += 1
            if self._bad >= self.MAX_BAD_PACKETS:
                raise
            return []
        self._bad = 0
        packets = []
        for frame in frames:
            if self._offset is None:  # the audio starts where the source's did
                start = frame.pts * frame.time_base if frame.pts is not None and frame.time_base else 0
                self._offset = round(start * self._out.codec_context.sample_rate)
            frame.pts = None  # the resampler times its frames itself: source times may repeat
            for resampled in self._resampler.resample(frame):
                packets += self._out.encode(resampled)
        return self._shifted(packets)

    def _shifted(self, packets: list[av.Packet]) -> list[av.Packet]:
        for packet in packets:
            if packet.pts is not None:
                packet.pts += self._offset or 0
            if packet.dts is not None:
                packet.dts += self._offset or 0
        return packets

    def flush(self) -> list[av.Packet]:
        packets = [p for resampled in self._resampler.resample(None) for p in self._out.encode(resampled)]
        return self._shifted(packets + list(self._out.encode(None)))
