"""Translate a stream of frames with a generator: the inference engine behind ``run``.

Pipeline (each stage overlaps the next):
    source (decode thread) -> model input per task -> flow (DIS worker threads, temporal
    models fed by DIS) -> generator on the device -> uint8 frames -> encoder thread (sink).

Frame-wise models batch ``batch`` consecutive frames.  Temporal models run frame after frame,
feeding back their previous output warped by the flow; the recurrent state resets at scene
cuts (``scene_cut``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..datasets.tasks import Task
from ..io import Frame, Sink
from ..io.base import BackgroundWriter
from ..nn.flow import DISFlow
from ..scene import SceneCutDetector


def to_tensor(images: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """``(H, W, C)`` uint8 images -> ``(B, C, H, W)`` float in [-1, 1] on ``device``."""
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    if device.type == "cuda":
        batch = batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device=device, dtype=torch.float32) / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(B, C, H, W)`` in [-1, 1] -> ``(B, H, W, C)`` uint8 on the CPU."""
    out = ((images.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return out.permute(0, 2, 3, 1).cpu().numpy()


def resize_short_side(x: torch.Tensor, short: int) -> torch.Tensor:
    """Resize ``(B, C, H, W)`` so that its short side is ``short`` (aspect kept)."""
    h, w = x.shape[-2:]
    scale = short / min(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)


@dataclass
class TranslateStats:
    frames: int
    seconds: float
    cuts: int

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def autocast_for(device: torch.device, precision: str):
    """The autocast context for ``precision`` (``fp32``, ``bf16``, ``fp16`` or ``auto``:
    bf16 on CUDA where supported, fp16 on older CUDA, fp32 on the CPU)."""
    if precision == "auto":
        if device.type != "cuda":
            return nullcontext()
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp32":
        return nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device.type, dtype=dtype)


class Translator:
    """Run a generator over frames.

    Args:
        model: a generator from :func:`vid2vid_lite.nn.build_generator` (eval mode).
        task: how a frame becomes the model's input.
        device: where the model runs.
        batch: frames per forward pass for frame-wise models.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16``.
        scene_cut: reset a temporal model's state at detected cuts.
        resize: process with this short side, then scale back (None: native size).
        flow_preset: DIS preset for temporal models fed by DIS.
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        device: torch.device,
        batch: int = 1,
        precision: str = "auto",
        scene_cut: bool = True,
        resize: int | None = None,
        flow_preset: str = "fast",
        flow_workers: int = 2,
    ) -> None:
        self.model = model.eval().to(device)
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.task = task
        self.device = device
        self.batch = max(1, int(batch))
        self.precision = precision
        self.scene_cut = scene_cut
        self.resize = resize
        self.temporal = getattr(model, "flow_source", "none") != "none"
        self.needs_flow = getattr(model, "flow_source", "none") == "dis"
        self.flow = DISFlow(flow_preset)
        self.flow_workers = flow_workers

    # -- the generator on one batch ------------------------------------------------------
    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize:
            x = resize_short_side(x, self.resize)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _finish(self, y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if y.shape[-2:] != size:
            y = F.interpolate(y.float(), size=size, mode="bicubic", align_corners=False).clamp(-1, 1)
        return y

    # -- frame-wise ----------------------------------------------------------------------
    def _framewise(self, frames: Iterator[Frame]) -> Iterator[tuple[Frame, np.ndarray]]:
        pending: list[Frame] = []

        def flush():
            inputs = [self.task.model_input(f.image) for f in pending]
            x = to_tensor(inputs, self.device)
            size = x.shape[-2:]
            with torch.inference_mode(), autocast_for(self.device, self.precision):
                y = self.model(self._prepare(x))
            out = to_uint8(self._finish(y, size))
            yield from zip(pending, out)
            pending.clear()

        for frame in frames:
            pending.append(frame)
            if len(pending) == self.batch:
                yield from flush()
        if pending:
            yield from flush()

    # -- temporal ------------------------------------------------------------------------
    def _with_flow(self, frames: Iterator[Frame], pool: ThreadPoolExecutor) -> Iterator[tuple]:
        """``(frame, model input, is_cut, flow future | None)``, flows computed ahead in a pool."""
        detector = SceneCutDetector()
        ahead: deque = deque()
        previous = None
        for frame in frames:
            inp = self.task.model_input(frame.image)
            cut = detector.is_cut(frame.image) if self.scene_cut else previous is None
            future: Future | None = None
            if self.needs_flow and not cut:
                future = pool.submit(self._dis, inp, previous)
            ahead.append((frame, inp, cut, future))
            previous = inp
            if len(ahead) > 2 * self.flow_workers:
                yield ahead.popleft()
        yield from ahead

    def _dis(self, current: np.ndarray, previous: np.ndarray):
        if self.resize:  # flow at the processing size
            current, previous = (
                to_uint8(resize_short_side(to_tensor([im], torch.device("cpu")), self.resize))[0]
                for im in (current, previous)
            )
        return self.flow.backward_with_validity(current, previous)

    def _temporal(self, frames: Iterator[Frame]) -> Iterator[tuple[Frame, np.ndarray]]:
        y_prev = x_prev = None
        with ThreadPoolExecutor(self.flow_workers, thread_name_prefix="v2v-flow") as pool:
            for frame, inp, cut, future in self._with_flow(frames, pool):
                if cut:
                    self.cuts += 1
                x = to_tensor([inp], self.device)
                size = x.shape[-2:]
                x = self._prepare(x)
                flow = valid = None
                if future is not None:
                    flow, valid = (t.to(self.device) for t in future.result())
                reset = torch.tensor([cut], device=self.device)
                with torch.inference_mode(), autocast_for(self.device, self.precision):
                    result = self.model(
                        x, x_prev=x_prev, y_prev=None if cut else y_prev, flow=flow, valid=valid, reset=reset
                    )
                y_prev, x_prev = result.out.float(), x
                yield frame, to_uint8(self._finish(result.out, size))[0]

    # -- the whole stream ----------------------------------------------------------------
    def translate(
        self, frames: Iterable[Frame], sink: Sink, total: int | None = None, progress: bool = True
    ) -> TranslateStats:
        """Translate every frame into ``sink`` (keeping each frame's timestamp)."""
        self.cuts = 0
        writer = BackgroundWriter(sink.write)
        start = time.perf_counter()
        count = 0
        steps = self._temporal(iter(frames)) if self.temporal else self._framewise(iter(frames))
        with tqdm(total=total, unit="frame", disable=not progress, dynamic_ncols=True) as bar:
            for frame, image in steps:
                writer.put(image, frame.pts)
                count += 1
                bar.update(1)
            writer.finish()
        return TranslateStats(frames=count, seconds=time.perf_counter() - start, cuts=self.cuts)

