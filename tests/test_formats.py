"""Files in the containers and codecs people still have on disk, and damaged copies of them.

Every clip is made here with PyAV's own encoders (nothing is downloaded).  ``run`` must write
every frame FFmpeg decodes, with strictly increasing timestamps and the sound, or refuse a file
with one line (a :class:`UserError`: the CLI prints it as ``error: ...`` and exits 2) and leave
no temporary file.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import av
import pytest
from media import run_in_process, audio_packets, make_clip, make_media, moving_pattern, tiny_checkpoints

from vid2vid_lite.errors import UserError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def can_encode(codec: str) -> bool:
    """Whether this PyAV's FFmpeg has an encoder of that name."""
    try:
        av.Codec(codec, "w")
    except av.codec.codec.UnknownCodecError:
        return False
    return True


#: AMR-NB, the sound of old phones' 3GP files: PyAV 18.1.0's FFmpeg encodes it, 18.1.1's only
#: decodes it; without the encoder the 3GP clip carries AAC (as later phones wrote), which MP4
#: takes as it is.
AMR = can_encode("libopencore_amrnb")

#: name -> (video encoder, audio encoder, muxer, extra make_media options, the default output's
#: suffix and what happens to its audio there: "copy", or the codec it is re-encoded to).
#: theora has no encoder in PyAV's FFmpeg, so the .ogv clip is VP8 + Vorbis.
MATRIX = {
    "clip.asf": ("msmpeg4", "wmav2", "asf", {}, ".mp4", "aac"),
    "clip.wmv": ("msmpeg4", "wmav2", "asf", {}, ".mp4", "aac"),
    "clip.mpg": ("mpeg1video", "mp2", "mpeg", {"options": {"bf": "2", "g": "12"}}, ".mp4", "copy"),
    "clip.vob": ("mpeg2video", "ac3", "vob", {"audio_rate": 48000, "options": {"bf": "2", "g": "12"}}, ".mp4", "copy"),
    "clip.m1v": ("mpeg1video", None, "mpeg1video", {"options": {"bf": "2", "g": "12"}}, ".mp4", None),
    "clip.flv": ("flv", "libmp3lame", "flv", {}, ".mp4", "copy"),
    "clip.3gp": ("h263", "libopencore_amrnb" if AMR else "aac", "3gp", {"audio_rate": 8000, "layout": "mono"}, ".mp4",
                 "aac" if AMR else "copy"),
    "clip.avi": ("mpeg4", "pcm_s16le", "avi", {}, ".mkv", "copy"),
    "clip.ogv": ("libvpx", "vorbis", "ogg", {}, ".mp4", "copy"),
    "clip.webm": ("libvpx-vp9", "libopus", "webm", {"audio_rate": 48000}, ".mp4", "copy"),
    "clip.mkv": ("libx264", "vorbis", "matroska", {}, ".mp4", "copy"),
    "clip.gif": ("gif", None, "gif", {}, ".mp4", None),
    "clip.rm": ("rv10", "real_144", "rm", {"audio_rate": 8000, "layout": "mono"}, ".mkv", "copy"),
    "clip.swf": ("flv", "libmp3lame", "swf", {}, ".mp4", "copy"),
    "clip.ts": ("mpeg2video", "mp2", "mpegts", {"options": {"bf": "2", "g": "12"}}, ".mp4", "copy"),
}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Tiny untrained checkpoints; the temporal one, as the bundled restore, takes no validity
    map (one DIS call a frame)."""
    return tiny_checkpoints(tmp_path_factory.mktemp("weights"), use_validity=False)


def decodes_cleanly(path: Path) -> bool:
    """True where a plain PyAV read of the first video stream of a known codec yields at least
    one frame and reports no error: such a file must never be refused."""
    try:
        with av.open(str(path)) as container:
            video = next((s for s in container.streams.video if s.codec_context is not None), None)
            return video is not None and sum(1 for _ in container.decode(video)) > 0
    except (av.FFmpegError, ValueError, OverflowError, UnicodeDecodeError, MemoryError):
        return False


def decoded(path: Path) -> tuple[int, list[str]]:
    """How many frames FFmpeg decodes from the first video stream of a known codec (up to any
    error), and the audio codecs it knows."""
    count = 0
    with av.open(str(path)) as container:
        codecs = [s.codec_context.name for s in container.streams.audio if s.codec_context is not None]
        video = next(s for s in container.streams.video if s.codec_context is not None)
        try:
            for _ in container.decode(video):
                count += 1
        except av.FFmpegError:
            pass
    return count, codecs


def presentation_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(f.pts * f.time_base) for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("formats")
    frames = moving_pattern(24, 48, 64)
    out = {}
    for name, (video, audio, muxer, extra, _, _) in MATRIX.items():
        size = {"frames": moving_pattern(24, 144, 176)} if video == "h263" else {"frames": frames}  # h263: CIF sizes
        out[name] = make_media(folder / name, video, audio, muxer, **size, **extra)
    return out


@pytest.mark.parametrize("name", list(MATRIX))
@pytest.mark.parametrize("suffix", [None, ".mp4", ".webm"])
def test_every_frame_and_the_sound_survive(tmp_path, clips, weights, name, suffix):
    clip = clips[name]
    count, codecs = decoded(clip)
    assert count == 24
    output = run_in_process(clip, weights["framewise"], output=str(tmp_path / f"out{suffix}") if suffix else None)
    try:
        back, back_codecs = decoded(output)
        if suffix is None:  # the default output: beside the input, .mkv where only Matroska can copy its audio
            default, audio = MATRIX[name][4:]
            assert output.parent == clip.parent and output.suffix == default
            if audio == "copy":  # the same bytes (MP4 names mp2 by its MPEG audio family; Matroska
                # may read RealAudio back in larger blocks)
                assert b"".join(p[2] for p in audio_packets(output)) == b"".join(p[2] for p in audio_packets(clip))
            elif audio:
                assert back_codecs == [audio]
        assert back == count
        times = presentation_times(output)
        assert all(a < b for a, b in zip(times, times[1:])), times
        assert len(back_codecs) == len(codecs)  # every audio stream, copied or re-encoded
        if suffix == ".webm" and codecs:
            assert back_codecs[0] in ("opus", "vorbis")
    finally:
        output.unlink(missing_ok=True)
    assert not [p for p in clip.parent.iterdir() if ".v2v-" in p.name]


def test_reencoded_audio_keeps_its_length(tmp_path, clips, weights):
    """wmav2 cannot go into MP4: it becomes AAC of the same duration (the issue's traceback)."""
    output = run_in_process(clips["clip.asf"], weights["framewise"], output=str(tmp_path / "out.mp4"))
    with av.open(str(clips["clip.asf"])) as src, av.open(str(output)) as out:
        assert out.streams.audio[0].codec_context.name == "aac"
        seconds = [sum(f.samples for f in c.decode(audio=0)) / c.streams.audio[0].sample_rate for c in (src, out)]
    assert seconds[1] == pytest.approx(seconds[0], abs=0.05)


@pytest.mark.parametrize("name", ["clip.vob", "clip.mpg", "clip.m1v", "clip.ts"])
def test_temporal_segments_keep_every_frame_of_mpeg_streams(tmp_path, clips, weights, name):
    """MPEG program and elementary streams have guessed or missing timestamps: a temporal model
    cut into segments (batch=2) must still write every frame once (the issue lost the last)."""
    output = run_in_process(clips[name], weights["temporal"], output=str(tmp_path / "out.mkv"), batch=2, warmup=2)
    assert decoded(output)[0] == decoded(clips[name])[0]
    times = presentation_times(output)
    assert all(a < b for a, b in zip(times, times[1:]))


def test_temporal_segments_on_a_seekable_file_keep_every_frame(tmp_path, weights):
    clip = make_clip(tmp_path / "c.mp4", moving_pattern(30, 48, 64), audio="aac", options={"bf": "2"})
    output = run_in_process(clip, weights["temporal"], output=str(tmp_path / "out.mp4"), batch=3, warmup=2)
    assert presentation_times(output) == pytest.approx(presentation_times(clip), abs=1e-6)


def test_a_container_that_refuses_the_source_time_base_gets_a_safe_one(tmp_path, weights, monkeypatch):
    """Where the muxer refuses the first setups, the writer re-encodes the audio, then moves the
    video to a 1/90000 time base: the frames keep their times and the sound stays."""
    from vid2vid_lite.io.writer import VideoSink

    clip = make_clip(tmp_path / "c.mp4", moving_pattern(12, 48, 64), fps=30, audio="aac")
    open_as_asked = VideoSink._open
    tried = []

    def refuse_all_but_the_safe_time_base(self, video, audio, encode_audio, time_base):
        tried.append((encode_audio, time_base))
        if time_base != VideoSink.SAFE_TIME_BASE:
            raise av.error.ArgumentError(22, "Invalid argument")  # what MP4 said in the issue
        open_as_asked(self, video, audio, encode_audio, time_base)

    monkeypatch.setattr(VideoSink, "_open", refuse_all_but_the_safe_time_base)
    output = run_in_process(clip, weights["framewise"], output=str(tmp_path / "out.mp4"))
    assert [t[0] for t in tried] == [False, True, True] and tried[-1][1] == VideoSink.SAFE_TIME_BASE
    assert presentation_times(output) == pytest.approx(presentation_times(clip), abs=1e-4)
    assert decoded(output)[1] == ["aac"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4", "out.mp4"]


def undecodable(path: Path) -> Path:
    """An MPEG-4 stream in Matroska whose packets are noise: it demuxes, but nothing decodes."""
    from fractions import Fraction

    rng = random.Random(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = Fraction(1, 25)
        for i in range(10):
            packet = av.Packet(bytes(rng.randrange(256) for _ in range(400)))
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, 25)
            container.mux(packet)
    return path


def test_an_undecodable_stream_is_one_line_from_the_command(tmp_path, weights):
    clip = undecodable(tmp_path / "noise.mkv")
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    result = subprocess.run([sys.executable, "-m", "vid2vid_lite.run", str(clip), f"weights={weights['framewise']}",
                             "device=cpu"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "@ 0x" not in line]  # FFmpeg's own log lines
    assert len(lines) == 1 and lines[0].startswith("error: ") and "cannot be decoded" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noise.mkv"]


# -- fuzz -------------------------------------------------------------------------------------
FUZZ_CASES = int(os.environ.get("V2V_FUZZ_CASES", "200"))  # V2V_FUZZ_SEED picks another set
FUZZ_SECONDS = 30  # one case may take this long at most (a hang fails the test)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """A damaged copy: truncated, some bytes flipped, or the header zeroed."""
    kind = rng.choice(("truncate", "flip", "header"))
    if kind == "truncate":
        return data[: rng.randrange(1, len(data))]
    out = bytearray(data)
    if kind == "flip":
        for _ in range(rng.randint(1, 40)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    else:
        n = rng.choice((16, 64, 256, 1024))
        out[:n] = bytes(min(n, len(out)))
    return bytes(out)


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang


def test_fuzzed_files_translate_or_fail_with_one_line(tmp_path, clips, weights):
    """Damaged copies: translated with every frame FFmpeg decodes, or, only where a plain PyAV
    read reports an error (or no frame), refused with one line; nothing left behind."""
    sources = [clips["clip.asf"], clips["clip.mpg"], make_clip(tmp_path / "clip.mp4", moving_pattern(24, 48, 64), audio="aac")]
    rng = random.Random(int(os.environ.get("V2V_FUZZ_SEED", "12")))
    outcomes = {"translated": 0, "refused": 0}
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for case in range(FUZZ_CASES):
            source = sources[case % len(sources)]
            folder = tmp_path / f"case{case:03d}"
            folder.mkdir()
            damaged = folder / f"damaged{source.suffix}"
            damaged.write_bytes(mutate(source.read_bytes(), rng))
            signal.alarm(FUZZ_SECONDS)
            try:
                output = run_in_process(damaged, weights["framewise"] if case % 4 else weights["temporal"])
            except UserError as err:
                assert "\n" not in str(err)
                assert not decodes_cleanly(damaged), f"case {case}: refused a file PyAV reads without error: {err}"
                outcomes["refused"] += 1
                assert [p.name for p in folder.iterdir()] == [damaged.name], f"case {case}: left {list(folder.iterdir())}"
            except _Hang:
                pytest.fail(f"case {case} ({damaged}) took over {FUZZ_SECONDS} s")
            else:
                outcomes["translated"] += 1
                assert decoded(output)[0] == decoded(damaged)[0], f"case {case}"
                assert sorted(p.name for p in folder.iterdir()) == sorted([damaged.name, output.name])
            finally:
                signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    print(outcomes)
    assert outcomes["translated"] and outcomes["refused"], outcomes
