"""Translate a video with a generator: the inference engine behind ``run``.

Pipeline (the stages overlap; the queues between them are bounded):

    decode thread -> model input per task -> flow (DIS worker threads, for temporal models fed
    by DIS) -> generator on the device -> uint8 frames -> encode thread (sink) -> rename

Frame-wise models batch ``batch`` consecutive frames.  A temporal model feeds back its own
previous output, so consecutive frames cannot share a batch; instead the video is cut into
``batch`` segments processed side by side as one batch.  Each segment after the first starts
``warmup`` frames early; those frames only warm the recurrent state up and are thrown away, so
no seam shows.  The first segment is encoded straight into the output; each of the others is
encoded at the same time by an encoder of its own into a packet file beside it (bounded
memory), and the packets are appended in order at the end, without decoding or re-encoding.  The
recurrent state also resets at scene cuts (``scene_cut``).

A guided task (``deflicker``) also reads a guide video (the original that the input was
processed from): :func:`paired` zips every reader of the input, the first and each later
segment's, with a reader of the guide opened at the same frame, and fails cleanly when the two
fall out of step.  The model input is ``Task.model_input(frame, guide)``; the guide feeds the
flow (``Task.flow_view``) and the scene-cut detector, since the processed video's flicker could
look like cuts.

On the CPU the model runs in ``workers`` threads, each with its share of the cores: a frame-wise
model translates ``workers`` batches at once, a temporal model's segments are spread over the
workers.  Independent forward passes on one core each beat one pass spread over every core,
whose OpenMP threads wait for each other at every layer, and for any core that the decode,
encode and flow threads take: on this project's 2-core machine ``run`` is 1.26-1.36x faster
end to end with 2 workers than with 1 (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..datasets.tasks import Task
from ..errors import UserError
from ..flow import DISFlow
from ..image import image_to_tensor, processing_size, tensor_to_image
from ..io import Frame, Source, VideoInfo, frame_timestamps, open_source
from .streams import Segment, check_guide, paired, plan_segments
from ..io.base import BackgroundWriter, Prefetcher
from ..scene import SceneCutDetector
from .precision import autocast_for, resolve_precision
from .recurrent import Recurrence, input_flow


def resize_short_side(x: torch.Tensor, short: int) -> torch.Tensor:
    """Resize ``(B, C, H, W)`` so that its short side is ``short`` (aspect kept)."""
    size = processing_size(*x.shape[-2:], short)
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)


def cpu_workers(cores: int | None = None) -> int:
    """``workers="auto"`` on the CPU: one model thread a core, at most 4 (beyond that each
    worker gets several cores)."""
    return max(1, min(4, cores or os.cpu_count() or 1))


def batch_for_memory(free_bytes: int, per_item_bytes: int, cap: int = 16, share: float = 0.5) -> int:
    """How many batch rows fit in ``share`` of the free memory (1 to ``cap``)."""
    return max(1, min(cap, int(free_bytes * share) // max(1, per_item_bytes)))


@dataclass
class TranslateStats:
    frames: int = 0
    seconds: float = 0.0
    cuts: int = 0
    segments: int = 1
    batch: int = 1

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class _Step:
    """One frame on its way through a temporal segment."""

    frame: Frame
    inp: np.ndarray
    cut: bool
    flow: object = None  # Future of (flow, valid) or None
    keep: bool = True


class _Part(NamedTuple):
    """A later segment's share of the outputs: a part of the output (and of the side-by-side
    video), each fed by its own background writer."""

    out: object
    writer: BackgroundWriter
    side: object | None
    side_writer: BackgroundWriter | None


@dataclass
class _Outputs:
    """Where translated frames go: the output (and side-by-side) sink through background
    writers; each later temporal segment writes to parts of them (``sink.part()``: encoded as
    they come, on their own threads), appended in order by :meth:`finish` without re-encoding."""

    sink: object
    side_sink: object | None
    main: BackgroundWriter
    side: BackgroundWriter | None
    parts: list[_Part] = field(default_factory=list)

    def add_part(self, first_frame: int) -> None:
        """Parts for one more later segment, whose first kept frame is ``first_frame``."""
        out = self.sink.part(first_frame)
        side = self.side_sink.part(first_frame) if self.side_sink is not None else None
        self.parts.append(_Part(out, BackgroundWriter(out.write), side, BackgroundWriter(side.write) if side else None))

    @staticmethod
    def pair(frame: Frame, image: np.ndarray) -> np.ndarray:
        """input | output, the input scaled to the output's size where they differ."""
        source = frame.image
        if source.shape[:2] != image.shape[:2]:
            source = cv2.resize(source, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_CUBIC)
        return np.concatenate([source, image], axis=1)

    def put(self, segment: int, frame: Frame, image: np.ndarray) -> None:
        if segment == 0:
            main, side = self.main, self.side
        else:
            main, side = self.parts[segment - 1].writer, self.parts[segment - 1].side_writer
        main.put(image, frame.pts)
        if side is not None:
            side.put(self.pair(frame, image), frame.pts)

    def finish(self) -> None:
        self.main.finish()
        if self.side is not None:
            self.side.finish()
        for part in self.parts:
            part.writer.finish()
            part.out.close()
            self.sink.append(part.out)
            if part.side is not None:
                part.side_writer.finish()
                part.side.close()
                self.side_sink.append(part.side)

    def discard(self) -> None:
        """Stop every writer thread and drop the parts (the caller aborts the sinks)."""
        for writer in (self.main, self.side, *(w for p in self.parts for w in (p.writer, p.side_writer))):
            if writer is not None:
                writer.stop()
        for part in self.parts:
            part.out.abort()
            if part.side is not None:
                part.side.abort()


class Translator:
    """Run a generator over a video.

    Args:
        model: a generator from :func:`vid2vid_lite.nn.build_generator`.
        task: how a frame becomes the model's input.
        device: where the model runs.
        batch: frames per forward pass (frame-wise) or segments side by side (temporal);
            ``"auto"``: 1 on the CPU (two cores gain nothing from batching); on CUDA, measured
            from one forward pass so that the batch fills half the free memory (at most 16).
        warmup: frames each temporal segment after the first starts early.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (:func:`resolve_precision`); the
            attribute holds the concrete one.
        scene_cut: reset a temporal model's state at detected cuts.
        resize: process at this short side, then scale back (None: native size).
        dis_preset: DIS preset of the flow a temporal model fed by DIS takes (None: the
            model's own ``dis_preset``).
        flow_check: DIS flow's forward-backward occlusion test (two DIS calls a frame), for
            models that take the validity map (``use_validity``, trained with the test);
            False: one call and validity 1 (faster).  Models without that input always get
            one call.
        compile: wrap the model in ``torch.compile``.
        stability: a temporal model's blend mask m becomes m ** ``stability`` (the generator's
            ``mask_power``): above 1 steadier, further from the frame it is given; 1 as trained.
        flow_workers: DIS threads (None: half the cores, 1 to 4).
        workers: model threads on the CPU (``"auto"``: :func:`cpu_workers`; always 1 on CUDA,
            where ``batch`` does this job); each uses ``cores // workers`` torch threads.
            Frame-wise: batches translated at once.  Temporal: with ``batch="auto"`` the video
            is cut into ``workers`` segments; the segments are spread over the workers.
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        device: torch.device,
        batch: int | str = 1,
        warmup: int = 8,
        precision: str = "auto",
        scene_cut: bool = True,
        resize: int | None = None,
        dis_preset: str | None = None,
        flow_check: bool = True,
        flow_workers: int | None = None,
        compile: bool = False,
        workers: int | str = "auto",
        stability: float = 1.0,
    ) -> None:
        model = model.eval().to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self.flow_source = getattr(model, "flow_source", "none")
        if not 0 < stability < float("inf") or (stability != 1.0 and self.flow_source == "none"):
            raise ValueError(f"stability must be a finite number > 0, and 1 for a frame-wise model; got {stability}")
        self.stability = float(stability)
        self.model = torch.compile(model) if compile else model
        self.task = task
        self.device = device
        self.batch_spec = batch
        self.batch = 1 if str(batch) == "auto" else max(1, int(batch))
        self.warmup = max(0, int(warmup))
        self.precision = resolve_precision(device, precision)
        self.scene_cut = scene_cut
        self.resize = resize
        preset = dis_preset or getattr(model, "config", {}).get("dis_preset", "fast")
        self.flow = DISFlow(preset)
        # A model that takes no validity map has no use for the test's second DIS call.
        self.flow_check = flow_check and getattr(model, "use_validity", True)
        # DIS threads: half the cores (1 on a 2-core machine, where the model needs the rest).
        self.flow_workers = flow_workers or max(1, min(4, (os.cpu_count() or 2) // 2))
        if device.type != "cpu":
            self.workers = 1
        else:
            self.workers = cpu_workers() if str(workers) == "auto" else max(1, int(workers))

    @property
    def temporal(self) -> bool:
        return self.flow_source != "none"

    def _auto_batch(self, info: VideoInfo) -> int:
        """``batch="auto"``: on CUDA the batch that fits in half the free memory, from the peak
        memory of one forward pass of one frame at this video's size; on the CPU one segment a
        worker for a temporal model, 1 for a frame-wise one."""
        if self.device.type != "cuda":
            return self.workers if self.temporal else 1  # CPU: one segment a worker
        frame = np.zeros((info.height, info.width, 3), np.uint8)
        inp = self.task.model_input(frame, frame if self.task.guided else None)
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        before = torch.cuda.memory_allocated(self.device)
        kwargs = {"reset": torch.ones(1, dtype=torch.bool, device=self.device)} if self.temporal else {}
        self._run_model([inp], **kwargs)
        per_row = torch.cuda.max_memory_allocated(self.device) - before
        free, _ = torch.cuda.mem_get_info(self.device)
        return batch_for_memory(free, per_row)

    # -- one forward pass ----------------------------------------------------------------
    def _model_tensor(self, inputs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Size]:
        """A batch of model inputs as the model takes it (at the processing size), and their
        size."""
        x = image_to_tensor(inputs, device=self.device)
        size = x.shape[-2:]
        if self.resize:
            x = resize_short_side(x, self.resize)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x, size

    def _forward(self, x: torch.Tensor, size: torch.Size, **temporal):
        """The generator on ``x`` under the precision's autocast; the output (a temporal model's
        ``out``) as float at ``size``."""
        with torch.inference_mode(), autocast_for(self.device, self.precision):
            result = self.model(x, **temporal, mask_power=self.stability) if self.temporal else self.model(x)
        y = (result.out if self.temporal else result).float()
        if y.shape[-2:] != size:
            y = F.interpolate(y, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)
        return result._replace(out=y) if self.temporal else y

    def _run_model(self, inputs: list[np.ndarray], **temporal):
        """Generator on a batch of model inputs; returns the output at the input size (a
        temporal model's :class:`TemporalOutput`, its ``out`` at the input size)."""
        return self._forward(*self._model_tensor(inputs), **temporal)

    # -- frame-wise ----------------------------------------------------------------------
    def _framewise(self, pairs: Iterator[tuple[Frame, np.ndarray | None]]) -> Iterator[tuple[int, Frame, np.ndarray]]:
        """Frames with their guide images (:func:`paired`), ``batch`` at a time."""
        batches = iter(lambda: list(itertools.islice(pairs, self.batch)), [])
        if self.workers == 1:
            for batch in batches:
                yield from self._framewise_batch(batch)
            return
        # Batches in flight on the workers, handed on in order; workers + 1 keeps them all busy.
        with ThreadPoolExecutor(self.workers, thread_name_prefix="v2v-model", initializer=self._worker_threads) as pool:
            ahead: deque = deque()
            for batch in batches:
                ahead.append(pool.submit(self._framewise_batch, batch))
                if len(ahead) > self.workers:
                    yield from ahead.popleft().result()
            while ahead:
                yield from ahead.popleft().result()

    def _framewise_batch(self, batch: list[tuple[Frame, np.ndarray | None]]) -> list[tuple[int, Frame, np.ndarray]]:
        y = self._run_model([self.task.model_input(frame.image, guide) for frame, guide in batch])
        return [(0, frame, image) for (frame, _), image in zip(batch, tensor_to_image(y))]

    def _worker_threads(self) -> None:
        """A model worker's torch threads: its share of the cores (the setting is per thread)."""
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.workers))

    # -- temporal ------------------------------------------------------------------------
    def _steps(self, pairs: Iterator[tuple[Frame, np.ndarray | None]], segment: Segment,
               pool: ThreadPoolExecutor) -> Iterator[_Step]:
        """A segment's frames (with their guide images, :func:`paired`) with cut flags and their
        flows, computed ahead in ``pool``."""
        detector = SceneCutDetector()
        ahead: deque[_Step] = deque()
        previous = None
        for frame, guide in itertools.islice(pairs, None if segment.end is None else segment.end - segment.read_from):
            inp = self.task.model_input(frame.image, guide)
            # A guide (the original video) shows the real cuts; flicker could look like one.
            cut = detector.is_cut(frame.image if guide is None else guide) if self.scene_cut else previous is None
            if cut and frame.index >= segment.start and frame.index > segment.read_from:
                self.stats.cuts += 1  # a cut inside the video, not a reader's first frame
            flow = None
            if self.flow_source == "dis" and not cut:
                flow = pool.submit(input_flow, self.task, self.flow, inp, previous, self.flow_check, self.resize)
            ahead.append(_Step(frame, inp, cut, flow, keep=frame.index >= segment.start))
            previous = inp
            if len(ahead) > 2 * self.flow_workers:
                yield ahead.popleft()
        yield from ahead

    def _temporal_on_workers(self, streams: list[Iterator[_Step]]) -> Iterator[tuple[int, Frame, np.ndarray]]:
        """Segments spread over the worker threads in contiguous groups (each group one batch);
        their frames are handed on as they come, each with its segment's index."""
        threads = min(self.workers, len(streams))
        if threads == 1:
            yield from self._temporal(streams)
            return
        bounds = [round(i * len(streams) / threads) for i in range(threads + 1)]

        def group(first: int, members: list[Iterator[_Step]]):
            def produce() -> Iterator[tuple[int, Frame, np.ndarray]]:
                self._worker_threads()
                for b, frame, image in self._temporal(members):
                    yield first + b, frame, image

            return produce

        merged = Prefetcher([group(lo, streams[lo:hi]) for lo, hi in zip(bounds, bounds[1:])],
                            maxsize=4 * threads, name="v2v-model")
        try:
            yield from merged
        finally:
            merged.close()

    def _temporal(self, streams: list[Iterator[_Step]]) -> Iterator[tuple[int, Frame, np.ndarray]]:
        """Step every segment at once: one batch row per segment still running."""
        recurrence = Recurrence(self._forward, feedback=self._model_size)
        active = list(range(len(streams)))
        while active:
            steps = {b: next(streams[b], None) for b in active}
            active = [b for b in active if steps[b] is not None]
            if not active:
                return
            rows = [steps[b] for b in active]
            x, size = self._model_tensor([s.inp for s in rows])
            flows = [s.flow for s in rows] if self.flow_source == "dis" else None
            y = recurrence.step(x, reset=[s.cut for s in rows], flow=flows, rows=active, size=size).out
            for i, (b, step) in enumerate(zip(active, rows)):
                if step.keep:
                    yield b, step.frame, tensor_to_image(y[i : i + 1])[0]

    @staticmethod
    def _model_size(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The output (at the input size) at the processing size, as the recurrence needs it."""
        if y.shape[-2:] != x.shape[-2:]:
            y = F.interpolate(y, size=x.shape[-2:], mode="bicubic", align_corners=False, antialias=True).clamp(-1, 1)
        return y

    # -- the whole video -----------------------------------------------------------------
    def translate(
        self,
        source: Source,
        sink,
        side_by_side=None,
        progress: bool = True,
        guide: Source | None = None,
    ) -> TranslateStats:
        """Translate every frame of ``source`` into ``sink`` (each keeps its timestamp); with
        ``side_by_side``, also write input | output there.  A guided task needs ``guide``, a
        source with the input's frame count and size (else :class:`UserError`)."""
        # OpenCV's own thread pool (DIS, resizes) would fight the model workers and the other
        # stages for the cores: 1.7x slower temporal runs at 256x256 on 2 cores.  The work is
        # already spread over threads here, so OpenCV runs single-threaded until the end.
        cv_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            return self._translate(source, sink, side_by_side, progress, guide)
        finally:
            cv2.setNumThreads(cv_threads)

    def _translate(self, source: Source, sink, side_by_side, progress: bool, guide: Source | None) -> TranslateStats:
        info: VideoInfo = source.info
        if self.task.guided != (guide is not None):
            raise ValueError(f"task {self.task.name} {'needs' if self.task.guided else 'takes no'} guide")
        if guide is not None:
            check_guide(info, guide.info)
        if str(self.batch_spec) == "auto":
            self.batch = self._auto_batch(info)
        self.stats = TranslateStats()
        start = time.perf_counter()
        outputs = _Outputs(sink, side_by_side, BackgroundWriter(sink.write), BackgroundWriter(side_by_side.write) if side_by_side else None)
        total = info.num_frames
        with ExitStack() as stack:
            if not self.temporal:
                self.stats.batch = self.batch
                steps = self._framewise(paired(source, guide))
            else:
                timestamps = frame_timestamps(info.path) if self.batch > 1 else None
                if timestamps is not None:
                    total = len(timestamps)
                # Later segments open the guide at their start too: a frame folder, or a video
                # with timestamps to seek by (else the video runs as one segment).
                guide_timestamps, seekable = None, True
                if guide is not None and self.batch > 1:
                    guide_timestamps = frame_timestamps(guide.info.path)
                    check_guide(info, guide.info, total, None if guide_timestamps is None else len(guide_timestamps))
                    seekable = guide.info.kind == "frames" or guide_timestamps is not None
                split = self.batch > 1 and total and seekable
                segments = plan_segments(total, self.batch, self.warmup) if split else [Segment(0, 0, None)]
                self.stats.segments = self.stats.batch = len(segments)
                # The flow workers' few torch ops (the occlusion test) run on one thread: with
                # OpenMP each calling thread would start a team as large as the model's, and the
                # teams would fight over the cores (the setting is per thread).
                pool = stack.enter_context(ThreadPoolExecutor(
                    self.flow_workers, thread_name_prefix="v2v-flow", initializer=torch.set_num_threads, initargs=(1,)
                ))
                streams = []
                for i, segment in enumerate(segments):
                    frames, guides = source, guide
                    if i:
                        frames = stack.enter_context(open_source(info.path, start=segment.read_from, timestamps=timestamps))
                        if guide is not None:
                            guides = stack.enter_context(
                                open_source(guide.info.path, start=segment.read_from, timestamps=guide_timestamps)
                            )
                        outputs.add_part(segment.start)
                    streams.append(self._steps(paired(frames, guides), segment, pool))
                steps = self._temporal_on_workers(streams)
            try:
                with tqdm(total=total, unit="frame", disable=not progress, dynamic_ncols=True) as bar:
                    for segment, frame, image in steps:
                        outputs.put(segment, frame, image)
                        self.stats.frames += 1
                        bar.update(1)
                    outputs.finish()
            except BaseException:
                steps.close()  # stops the worker threads before the readers close
                outputs.discard()
                raise
        self.stats.seconds = time.perf_counter() - start
        return self.stats
