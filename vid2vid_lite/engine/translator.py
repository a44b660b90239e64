"""Translate a video with a generator: the inference engine behind ``run``.

Pipeline (the stages overlap; the queues between them are bounded):

    decode thread -> model input per task -> flow (DIS worker threads, for temporal models fed
    by DIS) -> generator on the device -> uint8 frames -> encode threads (one a part) -> join

The video is cut into parts (engine/streams.py): fixed ranges of about ten seconds, each
encoded on its own into the job folder (io/job.py, io/parts.py) and marked complete there, so
that a run that dies is continued from its last complete part by the same command.  At the end
the parts are joined into the output without re-encoding.

Frame-wise models batch ``batch`` consecutive frames of a part.  A temporal model feeds back
its own previous output, so consecutive frames cannot share a batch; instead the parts are
spread over ``batch`` lanes that run side by side as one batch.  A temporal model starts every
part afresh, ``warmup`` frames early; those frames only warm the recurrent state up and are
thrown away, so no seam shows, and a part's frames do not depend on the lanes, the batch or an
interruption before it.  The recurrent state also resets at scene cuts (``scene_cut``).

A guided task (``deflicker``) also reads a guide video (the original that the input was
processed from): :func:`paired` zips every reader of the input with a reader of the guide
opened at the same frame, and fails cleanly when the two fall out of step.  The model input is
``Task.model_input(frame, guide)``; the guide feeds the flow (``Task.flow_view``) and the
scene-cut detector, since the processed video's flicker could look like cuts.

On the CPU the model runs in ``workers`` threads, each with its share of the cores: a frame-wise
model translates ``workers`` batches at once, a temporal model's lanes are spread over the
workers.  Independent forward passes on one core each beat one pass spread over every core,
whose OpenMP threads wait for each other at every layer, and for any core that the decode,
encode and flow threads take: on this project's 2-core machine ``run`` is 1.26-1.36x faster
end to end with 2 workers than with 1 (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..datasets.tasks import Task
from ..errors import InputDamaged
from ..flow import DISFlow
from ..image import image_to_tensor, processing_size, tensor_to_image
from ..io import Frame, Source, VideoInfo
from ..io.base import Prefetcher
from ..io.job import JobFolder
from ..io.parts import PartOutputs
from .streams import Pair, Part, Readers, lane_reads, part_batches, part_pairs, plan_parts
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
    """What a translation did: ``frames`` translated in ``seconds`` by this run (a continued
    job's earlier frames in ``kept_frames``), scene ``cuts``, ``segments`` (lanes of parts side
    by side), the ``batch`` and ``warnings`` about the input (a header that promised more
    frames than it had)."""

    frames: int = 0
    seconds: float = 0.0
    cuts: int = 0
    segments: int = 1
    batch: int = 1
    kept_frames: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class _Step:
    """One frame on its way through a temporal lane."""

    frame: Frame
    inp: np.ndarray
    cut: bool
    flow: object = None  # Future of (flow, valid) or None
    keep: bool = True


@dataclass(frozen=True)
class _PartEnd:
    """A lane's marker: part ``index`` has had all its frames."""

    index: int


class Translator:
    """Run a generator over a video.

    Args:
        model: a generator from :func:`vid2vid_lite.nn.build_generator`.
        task: how a frame becomes the model's input.
        device: where the model runs.
        batch: frames per forward pass (frame-wise) or lanes of parts side by side (temporal);
            ``"auto"``: 1 on the CPU (two cores gain nothing from batching); on CUDA, measured
            from one forward pass so that the batch fills half the free memory (at most 16).
        warmup: frames each part of a temporal model starts early (thrown away).
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
            runs ``workers`` lanes of parts; the lanes are spread over the workers.
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
        self.scale = int(getattr(model, "scale", 1))  # output size / input size
        if self.scale != task.scale:
            raise ValueError(f"the model outputs {self.scale}x its input's size but task {task.spec} is {task.scale}x")
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
        memory of one forward pass of one frame at this video's size; on the CPU one lane a
        worker for a temporal model, 1 for a frame-wise one."""
        if self.device.type != "cuda":
            return self.workers if self.temporal else 1  # CPU: one lane a worker
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
        """A batch of model inputs as the model takes it (at the processing size), and the
        size of the output (the inputs' size times the task's scale)."""
        x = image_to_tensor(inputs, device=self.device)
        size = torch.Size(self.scale * n for n in x.shape[-2:])
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
        """Generator on a batch of model inputs; returns the output at the output size (a
        temporal model's :class:`TemporalOutput`, its ``out`` at the output size)."""
        return self._forward(*self._model_tensor(inputs), **temporal)

    # -- frame-wise ----------------------------------------------------------------------
    def _framewise(self, batches: Iterator[tuple[int, list[Pair]]]) -> Iterator[tuple[int, Frame | None, np.ndarray | None]]:
        """Translate :func:`part_batches`' batches, in order; a part's end passes through as
        ``(part, None, None)``."""
        if self.workers == 1:
            for item in batches:
                yield from self._framewise_batch(item)
            return
        # Batches in flight on the workers, handed on in order; workers + 1 keeps them all busy.
        with ThreadPoolExecutor(self.workers, thread_name_prefix="v2v-model", initializer=self._worker_threads) as pool:
            ahead: deque = deque()
            try:
                for item in batches:
                    ahead.append(pool.submit(self._framewise_batch, item))
                    if len(ahead) > self.workers:
                        yield from ahead.popleft().result()
            except InputDamaged:
                while ahead:  # the frames read before the damage (on_error=keep writes them)
                    yield from ahead.popleft().result()
                raise
            while ahead:
                yield from ahead.popleft().result()

    def _framewise_batch(self, item: tuple[int, list[Pair]]) -> list[tuple[int, Frame | None, np.ndarray | None]]:
        part, batch = item
        if not batch:
            return [(part, None, None)]
        y = self._run_model([self.task.model_input(frame.image, guide) for frame, guide in batch])
        return [(part, frame, image) for (frame, _), image in zip(batch, tensor_to_image(y))]

    def _worker_threads(self) -> None:
        """A model worker's torch threads: its share of the cores (the setting is per thread)."""
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.workers))

    # -- temporal ------------------------------------------------------------------------
    def _steps(self, pairs: Iterator[Pair], part: Part, pool: ThreadPoolExecutor) -> Iterator[_Step]:
        """A part's frames, warm-up first (with their guide images, :func:`part_pairs`), with
        cut flags and their flows, computed ahead in ``pool``.  The first frame starts afresh."""
        detector = SceneCutDetector()
        ahead: deque[_Step] = deque()
        previous = None
        try:
            for frame, guide in pairs:
                inp = self.task.model_input(frame.image, guide)
                # A guide (the original video) shows the real cuts; flicker could look like one.
                cut = detector.is_cut(frame.image if guide is None else guide) if self.scene_cut else previous is None
                if cut and previous is not None and frame.index >= part.start:
                    self.stats.cuts += 1  # a cut inside the video, not the part's fresh start
                flow = None
                if self.flow_source == "dis" and not cut:
                    flow = pool.submit(input_flow, self.task, self.flow, inp, previous, self.flow_check, self.resize)
                ahead.append(_Step(frame, inp, cut, flow, keep=frame.index >= part.start))
                previous = inp
                if len(ahead) > 2 * self.flow_workers:
                    yield ahead.popleft()
        except InputDamaged:
            yield from ahead  # the frames read before the damage (on_error=keep writes them)
            raise
        yield from ahead

    def _lane(self, reads: list[tuple[int, Iterable[Part]]], readers, pool: ThreadPoolExecutor) -> Iterator[_Step | _PartEnd]:
        """A lane (:func:`lane_reads`): each run of consecutive parts from one reader
        (``readers(first_frame)``, a context manager of pairs), each part followed by its
        :class:`_PartEnd`."""
        for first, run in reads:
            with readers(first) as pairs:
                for part, frames in part_pairs(pairs, run, self.warmup):
                    yield from self._steps(frames, part, pool)
                    yield _PartEnd(part.index)

    def _temporal_on_workers(self, lanes: list[Iterator[_Step | _PartEnd]]) -> Iterator[tuple[int, Frame | None, np.ndarray | None]]:
        """Lanes spread over the worker threads in contiguous groups (each group one batch);
        their frames are handed on as they come."""
        threads = min(self.workers, len(lanes))
        if threads == 1:
            yield from self._temporal(lanes)
            return
        bounds = [round(i * len(lanes) / threads) for i in range(threads + 1)]

        def group(members: list[Iterator[_Step | _PartEnd]]):
            def produce() -> Iterator[tuple[int, Frame | None, np.ndarray | None]]:
                self._worker_threads()
                yield from self._temporal(members)

            return produce

        merged = Prefetcher([group(lanes[lo:hi]) for lo, hi in zip(bounds, bounds[1:])],
                            maxsize=4 * threads, name="v2v-model")
        try:
            yield from merged
        finally:
            merged.close()

    def _temporal(self, lanes: list[Iterator[_Step | _PartEnd]]) -> Iterator[tuple[int, Frame | None, np.ndarray | None]]:
        """Step every lane at once: one batch row per lane still running.  Yields ``(part,
        frame, image)`` for kept frames and ``(part, None, None)`` at a part's end."""
        recurrence = Recurrence(self._forward, feedback=self._model_size)
        active = list(range(len(lanes)))
        while active:
            rows = []
            for b in active:
                step = next(lanes[b], None)
                while isinstance(step, _PartEnd):
                    yield step.index, None, None
                    step = next(lanes[b], None)
                if step is not None:
                    rows.append((b, step))
            active = [b for b, _ in rows]
            if not rows:
                return
            x, size = self._model_tensor([step.inp for _, step in rows])
            flows = [step.flow for _, step in rows] if self.flow_source == "dis" else None
            y = recurrence.step(x, reset=[step.cut for _, step in rows], flow=flows, rows=active, size=size).out
            for i, (_, step) in enumerate(rows):
                if step.keep:
                    yield self._part_of(step.frame), step.frame, tensor_to_image(y[i : i + 1])[0]

    def _part_of(self, frame: Frame) -> int:
        return frame.index // self.part_frames

    def _model_size(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The output (at the output size) at the size the model gives for the processing-size
        input ``x``, as the recurrence feeds it back."""
        size = tuple(self.scale * n for n in x.shape[-2:])
        if y.shape[-2:] != size:
            y = F.interpolate(y, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(-1, 1)
        return y

    # -- the whole video -----------------------------------------------------------------
    def translate(
        self,
        source: Source,
        sink,
        side_by_side=None,
        progress: bool = True,
        guide: Source | None = None,
        job: JobFolder | None = None,
        part_seconds: float = 10.0,
        keep_damaged: bool = False,
    ) -> TranslateStats:
        """Translate every frame of ``source`` into ``sink`` (each keeps its timestamp); with
        ``side_by_side``, also write input | output there.  A guided task needs ``guide``, a
        source with the input's frame count and size (else :class:`UserError`).

        The parts (``part_seconds`` long) go through ``job``'s folder, whose complete parts an
        earlier run left are kept; without ``job`` a private folder beside ``sink`` is used and
        removed.  The sinks get every frame but are not closed: the caller closes (or aborts)
        them.  On an error the parts still open are dropped and the error is raised; with
        ``keep_damaged``, an :class:`InputDamaged` input's frames before the damage are joined
        into the sinks first."""
        # OpenCV's own thread pool (DIS, resizes) would fight the model workers and the other
        # stages for the cores: 1.7x slower temporal runs at 256x256 on 2 cores.  The work is
        # already spread over threads here, so OpenCV runs single-threaded until the end.
        cv_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        own_job = job is None
        job = job or JobFolder.scratch(sink.path)
        try:
            return self._translate(source, sink, side_by_side, progress, guide, job, part_seconds, keep_damaged)
        finally:
            cv2.setNumThreads(cv_threads)
            if own_job:
                job.close(keep_parts=False)

    def _translate(self, source: Source, sink, side_by_side, progress: bool, guide: Source | None,
                   job: JobFolder, part_seconds: float, keep_damaged: bool) -> TranslateStats:
        info: VideoInfo = source.info
        if self.task.guided != (guide is not None):
            raise ValueError(f"task {self.task.name} {'needs' if self.task.guided else 'takes no'} guide")
        if str(self.batch_spec) == "auto":
            self.batch = self._auto_batch(info)
        start = time.perf_counter()
        # Also checks the guide against the input (size, exact frame counts) before any frame.
        plan = plan_parts(source, guide, job, self.batch if self.temporal else 1, self.warmup, part_seconds)
        self.stats = TranslateStats(kept_frames=sum(plan.done.values()))
        self.part_frames = plan.part_frames
        readers = Readers(source, guide, plan.timestamps)
        outputs = PartOutputs(job, sink, side_by_side)
        with ExitStack() as stack:
            if not self.temporal:
                self.stats.batch = self.batch
                if plan.seekable and not plan.parts:
                    events = (event for event in ())  # every part is complete: only the join is left
                else:
                    pairs = stack.enter_context(readers.at(plan.parts[0].start if plan.seekable else 0))
                    events = self._framewise(part_batches(pairs, self.part_frames, plan.done, self.batch))
            else:
                lanes = lane_reads(plan, self.batch, self.warmup)
                self.stats.segments = self.stats.batch = len(lanes)
                # The flow workers' few torch ops (the occlusion test) run on one thread: with
                # OpenMP each calling thread would start a team as large as the model's, and the
                # teams would fight over the cores (the setting is per thread).
                pool = stack.enter_context(ThreadPoolExecutor(
                    self.flow_workers, thread_name_prefix="v2v-flow", initializer=torch.set_num_threads, initargs=(1,)
                ))
                events = self._temporal_on_workers([self._lane(reads, readers.at, pool) for reads in lanes])
            try:
                with tqdm(total=plan.total, initial=self.stats.kept_frames, unit="frame", disable=not progress,
                          dynamic_ncols=True) as bar:
                    for part, frame, image in events:
                        if frame is None:
                            outputs.end(part)
                            continue
                        outputs.put(part, frame, image)
                        self.stats.frames += 1
                        bar.update(1)
                    outputs.finish()
            except InputDamaged:
                events.close()
                if not keep_damaged:
                    outputs.discard()
                    raise
                outputs.finish()  # the open parts closed with the frames read before the damage
                outputs.join(stop_at_gap=True)
                raise
            except BaseException:
                events.close()  # stops the worker threads before the readers close
                outputs.discard()
                raise
            outputs.join()
        self.stats.warnings = readers.warnings()
        self.stats.seconds = time.perf_counter() - start
        return self.stats
