"""Headers are hints, errors are errors; seek only where seeking works.

A file whose header promises more frames or a longer duration than it holds (an AVI's frame
count two over, an ASF duration that counts the preroll) is read in full with no error;
``VideoSource.shortfall`` notes a large difference.  A demuxer or decoder error stays damage.
A video is read from midway (lanes of parts) only where a seek on it was proven to work, and a
seek that fails later falls back to decoding from the beginning: every frame is kept, in order.

The headers are patched in the bytes of files PyAV writes; each test first checks that PyAV
reads the patched value.
"""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media import run_in_process, make_clip, make_media, moving_pattern, tiny_checkpoints

import vid2vid_lite.io.video as video
from vid2vid_lite.errors import UserError
from vid2vid_lite.io import frame_timestamps
from vid2vid_lite.io.video import VideoSource, presentation_timestamps

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FRAMES = 250  # at 25 fps: 10 s, so that a header two frames over is under 1 s and 1 %


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory.mktemp("weights"), use_validity=False)


@pytest.fixture(scope="module")
def pan():
    return moving_pattern(FRAMES, 32, 48)


def decoded(path: Path) -> list[tuple[float, np.ndarray]]:
    """What a plain ``decode(video=0)`` gives: ``(time, RGB image)`` of every frame."""
    with av.open(str(path)) as container:
        return [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


def times(path: Path) -> list[float]:
    return [t for t, _ in decoded(path)]


def read(path: Path, **kwargs) -> tuple[list, VideoSource]:
    """Every frame a :class:`VideoSource` yields, and the (closed) reader."""
    source = VideoSource(path, **kwargs)
    with source:
        return list(source), source


def patched(path: Path, out: Path, *edits: tuple[int, str, int]) -> Path:
    """A copy of ``path`` with ``struct`` fields ``(offset, format, value)`` overwritten."""
    data = bytearray(path.read_bytes())
    for offset, fmt, value in edits:
        struct.pack_into(fmt, data, offset, value)
    out.write_bytes(bytes(data))
    return out


def box(data: bytes, tag: bytes) -> int:
    """Offset of a RIFF chunk or MP4 box's tag (its fields follow the tag and its size/version)."""
    offset = data.find(tag)
    assert offset > 0, tag
    return offset


# -- headers that promise more -----------------------------------------------------------------
def avi_with_frame_count(src: Path, out: Path, count: int) -> Path:
    """The AVI with its header's frame count set to ``count``: the main header's dwTotalFrames
    (which FFmpeg ignores) and the video stream header's dwLength (which it reads)."""
    data = src.read_bytes()
    avih, strh = box(data, b"avih"), box(data, b"strh")
    assert data[strh + 8 : strh + 12] == b"vids"
    return patched(src, out, (avih + 8 + 16, "<I", count), (strh + 8 + 32, "<I", count))


@pytest.fixture(scope="module")
def avi(tmp_path_factory, pan):
    return make_media(tmp_path_factory.mktemp("avi") / "clip.avi", "mpeg4", None, "avi", pan)


@pytest.mark.parametrize("count,warned", [(FRAMES + 70, True), (FRAMES + 2, False)])
def test_avi_that_counts_more_frames_than_it_holds(tmp_path, avi, count, warned):
    clip = avi_with_frame_count(avi, tmp_path / "clip.avi", count)
    with av.open(str(clip)) as container:
        assert container.streams.video[0].frames == count  # what the header now says
    frames, source = read(clip)
    plain = decoded(clip)
    assert len(plain) == FRAMES and len(frames) == FRAMES
    assert [f.time for f in frames] == pytest.approx([t for t, _ in plain])
    assert source.damage is None and source.info.num_frames == count
    if warned:  # 70 frames short: more than 1 s (25 frames)
        assert source.shortfall == f"{clip}: the header promised {count} frames; {FRAMES} decoded"
    else:  # two frames (0.08 s, 0.8 %): a header's miscount, not worth a word
        assert source.shortfall is None


#: ASF's File Properties Object; its play duration (100 ns units, preroll included) follows 64
#: bytes after the GUID, the send duration 72.
ASF_FILE_PROPERTIES = bytes.fromhex("A1DCAB8C47A9CF118EE400C00C205365")


@pytest.fixture(scope="module")
def asf(tmp_path_factory, pan):
    return make_media(tmp_path_factory.mktemp("asf") / "clip.asf", "msmpeg4", None, "asf", pan)


@pytest.mark.parametrize("extra,warned", [(3.0, True), (0.05, False)])
def test_asf_that_states_a_longer_duration(tmp_path, asf, extra, warned):
    data = asf.read_bytes()
    at = data.index(ASF_FILE_PROPERTIES)
    play, send = struct.unpack_from("<QQ", data, at + 64)
    ticks = round(extra * 10_000_000)
    clip = patched(asf, tmp_path / "clip.asf", (at + 64, "<Q", play + ticks), (at + 72, "<Q", send + ticks))
    with av.open(str(asf)) as original, av.open(str(clip)) as container:
        stream, before = container.streams.video[0], original.streams.video[0]
        seconds = float(before.duration * before.time_base)
        assert float(stream.duration * stream.time_base) == pytest.approx(seconds + extra)
        assert container.duration == pytest.approx(original.duration + extra * av.time_base, abs=1000)
        promised = float(stream.duration * stream.time_base)
    frames, source = read(clip)
    assert len(frames) == len(decoded(clip)) == FRAMES
    assert source.damage is None
    if warned:
        assert source.shortfall == f"{clip}: the header promised {promised:.2f} s; frames end at {FRAMES / 25:.2f} s"
    else:
        assert source.shortfall is None


def test_mp4_header_durations_do_not_promise_frames(tmp_path, pan):
    """MP4's mvhd, tkhd, mdhd and edit list durations, tripled: FFmpeg's mov demuxer takes a
    track's length from its sample tables, so PyAV reports the real one and nothing is short."""
    clip = make_clip(tmp_path / "clip.mp4", pan)
    data = clip.read_bytes()
    mvhd, tkhd, mdhd, elst = (box(data, tag) for tag in (b"mvhd", b"tkhd", b"mdhd", b"elst"))
    assert data[mvhd + 4] == data[tkhd + 4] == data[mdhd + 4] == 0  # version 0: 32-bit fields
    fields = [mvhd + 20, tkhd + 24, mdhd + 20, elst + 12]  # durations (the edit's segment)
    edits = [(at, ">I", 3 * struct.unpack_from(">I", data, at)[0]) for at in fields]
    long = patched(clip, tmp_path / "long.mp4", *edits)
    with av.open(str(clip)) as original, av.open(str(long)) as container:
        assert container.duration == original.duration
        assert container.streams.video[0].duration == original.streams.video[0].duration
    frames, source = read(long)
    assert len(frames) == FRAMES and source.damage is None and source.shortfall is None


def cut_faststart(folder: Path, frames: np.ndarray) -> Path:
    """An H.264 MP4 with its index first (faststart, key frames every 6 frames), cut at 4/5:
    the last packet that remains is cut short."""
    fast = folder / "fast.mp4"
    with av.open(str(fast), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=25, options={"g": "6"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    cut = folder / "cut_fast.mp4"
    cut.write_bytes(fast.read_bytes()[: fast.stat().st_size * 4 // 5])
    return cut


def test_a_cut_mp4_fails_to_open_or_is_damaged(tmp_path, pan):
    """A cut MP4 whose index (moov) came last cannot be opened; one whose index comes first
    (faststart) promises every frame, and its cut packet is a decoder error: damage."""
    clip = make_clip(tmp_path / "clip.mp4", pan)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    with pytest.raises(UserError, match="cannot be read as video .* damaged or truncated"):
        VideoSource(cut)

    source = VideoSource(cut_faststart(tmp_path, pan))
    got = []
    with pytest.raises(UserError, match="is damaged after frame"):
        got.extend(source)
    source.close()
    assert 0 < len(got) < FRAMES and source.damage and source.shortfall is None


def test_a_file_that_ends_without_error_is_read_to_its_end(tmp_path):
    """Matroska cut in half: the demuxer just ends; the header's 2.4 s is a hint."""
    clip = make_clip(tmp_path / "clip.mkv", moving_pattern(60, 48, 64))
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    frames, source = read(cut)
    assert 0 < len(frames) == len(decoded(cut)) < 60
    assert source.damage is None
    end = frames[-1].time + 0.04  # where the last frame's display ends
    assert source.shortfall == f"{cut}: the header promised 2.40 s; frames end at {end:.2f} s"


@pytest.mark.parametrize("options", [{"batch": 2, "warmup": 2}, {"batch": 1}])
def test_run_translates_every_frame_of_a_file_that_promised_more(tmp_path, avi, weights, options):
    clip = avi_with_frame_count(avi, tmp_path / "clip.avi", 100)
    output = run_in_process(clip, weights["temporal"], output=str(tmp_path / "out.mkv"), **options)
    assert times(output) == pytest.approx(times(clip), abs=1e-3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi", "out.mkv"]


# -- seeking ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def streams(tmp_path_factory, pan):
    """SWF (its demuxer cannot seek) and FLV, with sound, as tests/test_formats.py makes them."""
    folder = tmp_path_factory.mktemp("seek")
    return {name: make_media(folder / name, "flv", "libmp3lame", name[-3:], pan) for name in ("clip.swf", "clip.flv")}


def test_timestamps_only_where_a_seek_lands(streams, avi, asf):
    with av.open(str(streams["clip.swf"])) as container:
        with pytest.raises(av.FFmpegError, match="Operation not permitted"):
            container.seek(10, stream=container.streams.video[0])
    assert presentation_timestamps(streams["clip.swf"]) is None and frame_timestamps(streams["clip.swf"]) is None
    for clip in (streams["clip.flv"], avi, asf):
        assert len(frame_timestamps(clip)) == FRAMES, clip


@pytest.mark.parametrize("name", ["clip.swf", "clip.flv"])
@pytest.mark.parametrize("workers", [1, 2])
def test_temporal_segments_keep_every_frame_in_order(tmp_path, streams, weights, name, workers):
    clip = streams[name]
    output = run_in_process(clip, weights["temporal"], output=str(tmp_path / "out.mkv"), batch=2, warmup=2, workers=workers)
    assert times(output) == pytest.approx(times(clip), abs=1e-3)


class SeekFails:
    """``av`` for vid2vid_lite.io.video, whose containers' ``seek`` fails from the ``after``+1st
    call on (counted over every container), as SWF's does; the rest is PyAV's own."""

    def __init__(self, after: int):
        self.after, self.calls, self.failed = after, 0, 0

    def __getattr__(self, name):
        return getattr(av, name)

    def open(self, *args, **kwargs):
        return _Container(av.open(*args, **kwargs), self)


class _Container:
    def __init__(self, container, counter: SeekFails):
        self._container, self._counter = container, counter

    def __getattr__(self, name):
        return getattr(self._container, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._container.close()

    def seek(self, *args, **kwargs):
        self._counter.calls += 1
        if self._counter.calls > self._counter.after:
            self._counter.failed += 1
            raise av.error.PermissionError(1, "Operation not permitted")
        return self._container.seek(*args, **kwargs)


@pytest.fixture(scope="module")
def mp4(tmp_path_factory, pan):
    """Key frames every 6 frames, B-frames: a later segment starts between key frames."""
    return make_clip(tmp_path_factory.mktemp("mp4") / "clip.mp4", pan, audio="aac", options={"g": "6", "bf": "2"})


def test_a_failed_seek_reads_from_the_beginning(mp4, monkeypatch):
    timestamps = presentation_timestamps(mp4)
    full, _ = read(mp4)
    shim = SeekFails(after=0)
    monkeypatch.setattr(video, "av", shim)
    frames, source = read(mp4, start=11, timestamps=timestamps)
    assert shim.failed == 1 and source.damage is None
    assert [f.index for f in frames] == list(range(11, FRAMES))
    assert [f.pts for f in frames] == [f.pts for f in full[11:]] == timestamps[11:]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(frames, full[11:]))
    # Without timestamps to seek by (none proven), the same: no seek is even tried.
    assert presentation_timestamps(mp4) is None
    frames, _ = read(mp4, start=11)
    assert [f.pts for f in frames] == timestamps[11:]


def test_a_decode_error_on_the_way_is_still_damage(tmp_path, pan, monkeypatch):
    """A reader that cannot seek decodes from the beginning; a decoder error there is damage."""
    cut = cut_faststart(tmp_path, pan)
    timestamps = presentation_timestamps(cut)
    assert timestamps is not None  # its packets, to the cut, and a seek that works
    monkeypatch.setattr(video, "av", SeekFails(after=0))
    source = VideoSource(cut, start=len(timestamps) - 1, timestamps=timestamps)
    with pytest.raises(UserError, match="is damaged after frame"):
        list(source)
    source.close()
    assert source.damage


@pytest.mark.parametrize("workers", [1, 2])
def test_a_seek_that_fails_after_the_probe_keeps_every_frame(tmp_path, mp4, weights, monkeypatch, workers):
    shim = SeekFails(after=1)  # the first seek, the probe before the cut into segments, works
    monkeypatch.setattr(video, "av", shim)
    output = run_in_process(mp4, weights["temporal"], output=str(tmp_path / "out.mp4"), batch=2, warmup=2, workers=workers)
    assert shim.failed >= 1  # a later segment tried a seek, and read from the beginning instead
    assert times(output) == pytest.approx(times(mp4), abs=1e-3)
