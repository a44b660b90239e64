"""The one recurrent step driver (engine/recurrent.py) gives what a plain frame-by-frame loop
gives, for each of its users: training clips, validation and the translator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from media import make_clip, moving_pattern

from vid2vid_lite.datasets.tasks import get_task
from vid2vid_lite.engine.gan import ClipGenerator
from vid2vid_lite.engine.recurrent import Recurrence
from vid2vid_lite.engine.trainer import translate_frames
from vid2vid_lite.engine.translator import Translator
from vid2vid_lite.flow import DISFlow
from vid2vid_lite.image import image_to_tensor, tensor_to_image
from vid2vid_lite.io import open_sink, open_source, read_video
from vid2vid_lite.nn import build_generator
from vid2vid_lite.scene import SceneCutDetector

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**extra):
    torch.manual_seed(0)
    return build_generator({"name": "temporal", "ngf": 8, "depth": 3, "residual": True, "mask_bias": 0.0, **extra})


def clip_with_a_cut() -> np.ndarray:
    """10 frames 40x56: a pan, then a cut to another pattern."""
    return np.concatenate([moving_pattern(5, 40, 56, seed=1), 255 - moving_pattern(5, 40, 56, seed=2)])


@pytest.mark.parametrize("flow", ["dis", "learned"])
@pytest.mark.parametrize("tbptt", [0, 2])
def test_training_clips_match_a_plain_loop_outputs_and_gradients(flow, tbptt):
    model = tiny(flow=flow)
    torch.manual_seed(1)
    x = torch.rand(2, 5, 3, 24, 32) * 2 - 1
    flows, valid = torch.randn(2, 5, 2, 24, 32), torch.rand(2, 5, 1, 24, 32)

    def plain():  # the trainer's loop before the driver existed
        given = flow == "dis"
        results, y_prev = [], None
        for t in range(x.shape[1]):
            if t == 0:
                r = model(x[:, 0])
            else:
                r = model(x[:, t], x_prev=x[:, t - 1], y_prev=y_prev, flow=flows[:, t] if given else None,
                          valid=valid[:, t] if given else None)
            y_prev = r.out
            if tbptt and (t + 1) % tbptt == 0:
                y_prev = y_prev.detach()
            results.append(r)
        return torch.stack([r.out for r in results], dim=1), torch.stack([r.mask for r in results], dim=1)

    def gradients(out):
        model.zero_grad()
        out.square().mean().backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    expected_out, expected_mask = plain()
    expected_grads = gradients(expected_out)
    got = ClipGenerator(model, tbptt)(x, flows, valid)
    assert torch.equal(got["out"], expected_out) and torch.equal(got["mask"], expected_mask)
    grads = gradients(got["out"])
    assert len(grads) == len(expected_grads) and all(torch.equal(a, b) for a, b in zip(grads, expected_grads))


def test_validation_matches_a_plain_loop():
    """What validation scores: DIS flow on the inputs, resets at the cuts."""
    model = tiny().eval()
    frames = clip_with_a_cut()
    v = {"a": frames, "cuts": [0, 5]}
    with torch.no_grad():
        got = translate_frames(model, get_task("restore"), frames, v["cuts"], torch.device("cpu"))
        a = image_to_tensor(frames)
        dis, outputs, y_prev = DISFlow("fast"), [], None
        for t in range(len(a)):  # validate()'s loop before the driver existed
            cut = t in v["cuts"]
            flow = valid = None
            if not cut:
                flow, valid = dis.backward_with_validity(frames[t], frames[t - 1])
            r = model(a[t : t + 1], x_prev=None if t == 0 else a[t - 1 : t], y_prev=None if cut else y_prev,
                      flow=flow, valid=valid, reset=torch.tensor([cut]))
            y_prev = r.out.float()
            outputs.append(y_prev)
    assert torch.equal(got, torch.cat(outputs))


@pytest.mark.parametrize("use_validity", [True, False])
def test_the_translator_matches_a_plain_loop(tmp_path, use_validity):
    """One part: scene cuts, DIS flow computed ahead on threads, fed back outputs."""
    frames = clip_with_a_cut()
    clip = make_clip(tmp_path / "c.mkv", frames, codec="ffv1")
    model = tiny(use_validity=use_validity)
    task = get_task("restore")
    with open_source(clip) as source, open_sink(tmp_path / "out", like=source.info) as sink:  # lossless PNGs
        stats = Translator(model, task, torch.device("cpu"), batch=1, precision="fp32").translate(source, sink, progress=False)
    got = read_video(tmp_path / "out")[0]
    assert stats.cuts == 1 and len(got) == len(frames)

    expected, detector, dis, y_prev, previous = [], SceneCutDetector(), DISFlow("fast"), None, None
    with torch.inference_mode(), open_source(clip) as source:
        for frame in source:
            x = image_to_tensor([frame.image])
            if detector.is_cut(frame.image):
                r = model(x, reset=torch.tensor([True]))
            else:
                flow, valid = dis.backward_with_validity(frame.image, previous.image, check=use_validity)
                r = model(x, x_prev=x_prev, y_prev=y_prev, flow=flow, valid=valid, reset=torch.tensor([False]))
            x_prev, y_prev, previous = x, r.out.float(), frame
            expected.append(tensor_to_image(y_prev)[0])
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))


def test_rows_that_join_and_leave_step_like_rows_of_their_own():
    """The translator's batch of segments: a row that joins later starts with a reset, one that
    ends drops out; each row's outputs are those of a recurrence of its own."""
    model = tiny().eval()
    torch.manual_seed(2)
    x = torch.rand(6, 2, 3, 24, 32) * 2 - 1
    flows = [(torch.randn(1, 2, 24, 32), torch.rand(1, 1, 24, 32)) for _ in range(6)]
    together, alone = Recurrence(model), [Recurrence(model), Recurrence(model)]
    with torch.no_grad():
        for t in range(6):
            rows = [0] if t < 2 else [1] if t == 5 else [0, 1]  # row 1 joins at t=2, row 0 ends at t=4
            batch = torch.cat([x[t, r : r + 1] for r in rows])
            got = together.step(batch, reset=[False] * len(rows), flow=[flows[t]] * len(rows), rows=rows).out
            for i, r in enumerate(rows):
                want = alone[r].step(x[t, r : r + 1], reset=[False], flow=[flows[t]], rows=[0]).out
                assert torch.allclose(got[i : i + 1], want, atol=1e-5)
