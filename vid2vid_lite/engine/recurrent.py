"""The recurrent step of a temporal generator, written once for training, validation and
inference.

Each step, for a batch of rows (each row its own sequence: a training clip, a validation shot,
a lane of the video's parts being translated)::

    reset      a row that starts a shot (its first frame, a scene cut) has no past: the model
               sees zeros for it and takes m = 1 (a new image)
    flow       t -> t-1 for the other rows: given (DIS on the model inputs, from the training
               cache or :func:`input_flow`, which inference runs ahead on worker threads), or,
               when none is given, estimated inside the model (learned flow, RAFT)
    generator  model(x[t], x[t-1], y[t-1], flow, valid, reset): y[t-1] warped to t, the U-Net,
               the blend y[t] = m * h + (1 - m) * warped (:class:`TemporalGenerator`)
    feedback   y[t] becomes the row's y[t-1] for its next step (detached every ``tbptt`` steps)

:class:`Recurrence` holds the rows' past and runs the steps; callers keep only what is theirs:
the trainer stacks a clip's outputs, validation scores them, the translator batches segments
side by side and encodes the outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import cv2
import numpy as np
import torch

from ..datasets.tasks import Task
from ..flow import DISFlow
from ..image import processing_size
from ..nn.temporal import TemporalOutput

Flow = tuple[torch.Tensor, torch.Tensor]


def input_flow(
    task: Task, dis: DISFlow, current: np.ndarray, previous: np.ndarray, check: bool = True,
    short_side: int | None = None,
) -> Flow:
    """DIS flow t -> t-1 ``(1, 2, H, W)`` and validity ``(1, 1, H, W)`` between two model inputs
    ``(H, W, C)`` uint8, on the view the task gives DIS (gray for one channel, class indices for
    label maps), at the processing size when ``short_side`` is set; ``check``: the
    forward-backward occlusion test (else validity 1, one DIS call)."""
    current, previous = task.flow_view(current), task.flow_view(previous)
    if short_side:
        h, w = processing_size(*current.shape[:2], short_side)
        current, previous = (cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in (current, previous))
    return dis.backward_with_validity(current, previous, check=check)


class Recurrence:
    """Feed a temporal generator its own previous outputs, step after step.

    Args:
        model: the generator, or a callable with its signature (``model(x, x_prev=, y_prev=,
            flow=, valid=, reset=, **extra) -> TemporalOutput``), e.g. one that adds autocast.
        tbptt: detach the fed-back output every ``tbptt`` steps (truncated backpropagation
            through time); 0: never.
        feedback: ``feedback(out, x) -> y_prev``: what of a step's output ``out`` is kept for
            the next step (default: ``out`` itself).

    Rows are identified by ``rows`` keys, so the batch may change between steps (a lane that
    ended drops out); ``rows=None`` takes the whole batch as one group of rows that always step
    together (a batch of training clips).
    """

    def __init__(self, model: Callable[..., TemporalOutput], tbptt: int = 0,
                 feedback: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> None:
        self.model = model
        self.tbptt = int(tbptt or 0)
        self.feedback = feedback
        self.steps = 0
        self._past: dict[Hashable, tuple[torch.Tensor, torch.Tensor]] = {}  # row -> (x[t-1], y[t-1])

    def step(
        self,
        x: torch.Tensor,
        reset: Sequence[bool] | torch.Tensor | None = None,
        flow: torch.Tensor | Sequence | None = None,
        valid: torch.Tensor | None = None,
        rows: Sequence[Hashable] | None = None,
        **extra,
    ) -> TemporalOutput:
        """One step of every row of ``x`` ``(B, C, H, W)``.

        Args:
            reset: per row, True where it starts a shot (rows without a past always do); None:
                only the rows without a past.
            flow: the backward flow t -> t-1 ``(B, 2, H, W)`` (with ``valid`` ``(B, 1, H, W)``
                or None), or per row a ``(flow, valid)`` pair / a future of one / None for rows
                that reset; None: the model estimates it.
            rows: the rows' keys (None: the batch is one group).
            extra: passed on to ``model``.
        """
        keys = [None] if rows is None else list(rows)
        fresh = [key not in self._past for key in keys]
        if rows is None:  # one group: its rows share their past
            fresh = fresh * x.shape[0]
        flags = fresh if reset is None else [bool(r) or f for r, f in zip(reset, fresh)]
        given = None if reset is None and not any(fresh) else torch.tensor(flags, device=x.device)
        if all(flags):
            result = self.model(x, **extra) if reset is None else self.model(x, reset=given, **extra)
        else:
            x_prev, y_prev = self._gather(keys)
            if flow is not None and not isinstance(flow, torch.Tensor):
                flow, valid = self._gather_flows(flow, flags, x)
            result = self.model(x, x_prev=x_prev, y_prev=y_prev, flow=flow, valid=valid, reset=given, **extra)
        self._remember(keys, x, result.out)
        return result

    def _remember(self, keys: list, x: torch.Tensor, out: torch.Tensor) -> None:
        self.steps += 1
        y = out if self.feedback is None else self.feedback(out, x)
        if self.tbptt and self.steps % self.tbptt == 0:
            y = y.detach()
        if len(keys) == 1:
            self._past[keys[0]] = (x, y)
            return
        for i, key in enumerate(keys):
            self._past[key] = (x[i : i + 1], y[i : i + 1])

    def _gather(self, keys: list) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_prev, y_prev)`` of the batch; zeros for rows without a past (the model ignores
        the past of a row that resets).  One key (the usual case) is used as it is: no copy."""
        if len(keys) == 1:
            return self._past[keys[0]]
        x0, y0 = next(iter(self._past.values()))
        past = [self._past.get(key) for key in keys]
        blank = (torch.zeros_like(x0), torch.zeros_like(y0)) if None in past else None
        return tuple(torch.cat([(p or blank)[i] for p in past]) for i in (0, 1))

    @staticmethod
    def _gather_flows(flows: Sequence, flags: list[bool], like: torch.Tensor) -> Flow:
        """Per-row flows (pairs, futures of pairs) as one batch on ``like``'s device; zeros of
        ``like``'s size (the inputs': a flow is the inputs') for rows that reset."""
        if all(f is None for f in flows):
            return None, None  # the model estimates its own
        size = like.shape[-2:]
        pairs = [
            (torch.zeros(1, 2, *size), torch.zeros(1, 1, *size)) if reset
            else (f.result() if hasattr(f, "result") else f)
            for f, reset in zip(flows, flags)
        ]
        if len(pairs) == 1:
            return pairs[0][0].to(like.device), pairs[0][1].to(like.device)
        return torch.cat([p[0] for p in pairs]).to(like.device), torch.cat([p[1] for p in pairs]).to(like.device)
