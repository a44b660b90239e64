"""Generators, discriminators and flow heads (vid2vid_lite.nn)."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
import torch.nn.functional as F

from vid2vid_lite.errors import UserError
from vid2vid_lite.losses import warp_loss
from vid2vid_lite.nn import (
    LearnedFlow,
    MultiScaleDiscriminator,
    NLayerDiscriminator,
    RAFTFlow,
    TemporalDiscriminator,
    TemporalGenerator,
    UNet,
    UNetGenerator,
    build_discriminator,
    build_generator,
    build_temporal_discriminator,
)
from vid2vid_lite.nn.temporal_d import centre_flows
from vid2vid_lite.nn.warp import chain_flows
from vid2vid_lite.nn.unet import crop_pad, pad_to_multiple

SIZES = [(37, 53), (64, 96), (16, 16)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def images(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) * 2 - 1


def tiny_temporal(**kw) -> TemporalGenerator:
    torch.manual_seed(0)
    return TemporalGenerator(**{"ngf": 8, "depth": 3, **kw})


# --------------------------------------------------------------------------------------------
# Padding and the U-Net


@pytest.mark.parametrize("size", SIZES + [(1, 3)])
@pytest.mark.parametrize("mode", ["reflect", "replicate", "zeros"])
def test_pad_to_multiple_round_trip(size, mode):
    x = images(1, 2, *size)
    padded, pads = pad_to_multiple(x, 16, mode)
    assert padded.shape[-2] % 16 == 0 and padded.shape[-1] % 16 == 0
    assert torch.equal(crop_pad(padded, pads), x)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("norm", ["instance", "group", "none"])
def test_unet_generator_keeps_any_size(size, norm):
    g = UNetGenerator(in_channels=3, ngf=8, depth=4, norm=norm).eval()
    y = g(images(2, 3, *size))
    assert y.shape == (2, 3, *size)
    assert y.abs().max() <= 1.0


def test_unet_default_depth_pads_odd_sizes():
    g = UNetGenerator(in_channels=1, ngf=4).eval()  # depth 7: pad multiple 128
    assert g.multiple == 128
    assert g(images(1, 1, 37, 53)).shape == (1, 3, 37, 53)


def test_unet_decoder_features_shape():
    body = UNet(3, 3, ngf=8, depth=4)
    logits, features = body(images(1, 3, 32, 48), return_features=True)
    assert logits.shape == (1, 3, 32, 48)
    assert features.shape == (1, 16, 16, 24) and body.feature_channels == 16
    with pytest.raises(ValueError, match="multiple of 16"):
        body(images(1, 3, 30, 48))


def test_residual_generator_starts_as_identity():
    g = UNetGenerator(ngf=8, depth=3, residual=True).eval()
    x = images(1, 3, 21, 30)
    assert torch.equal(g(x), x)
    gray = UNetGenerator(in_channels=1, ngf=8, depth=3, residual=True).eval()
    x1 = images(1, 1, 21, 30)
    assert torch.equal(gray(x1), x1.expand(-1, 3, -1, -1))


def test_full_res_path_runs_at_full_size_and_starts_as_identity():
    g = UNetGenerator(ngf=8, depth=3, residual=True, full_res=2, norm="none")
    x = images(1, 3, 21, 30)
    assert torch.equal(g.eval()(x), x)  # residual: the last layer (the tail) starts at zero
    assert g.body.last is g.body.tail
    # The head's features have the (padded) input's full size; pix2pix's first layer halves it.
    sizes = []
    g.body.head.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape)))
    g(x)
    assert sizes == [(1, 4, 24, 32)]  # ngf // 2 channels
    with torch.no_grad():  # "trained": the zero last layer would stop every gradient upstream
        g.body.last.weight.normal_(0, 0.1)
    g(images(2, 3, 37, 53)).square().mean().backward()
    assert_all_grads(g)
    with pytest.raises(ValueError, match="full_res"):
        UNet(3, 3, 8, 3, full_res=-1)


def test_full_res_temporal_model_starts_from_a_framewise_one():
    framewise = UNetGenerator(ngf=8, depth=3, full_res=1)
    for p in framewise.parameters():
        p.data.normal_(0, 0.1)
    g = TemporalGenerator(ngf=8, depth=3, full_res=1, flow="learned")
    report = g.init_from_framewise(framewise)
    # head's first conv (extra inputs) and the tail (extra mask channel) are copied in part
    assert {"body.head.0.weight", "body.tail.weight", "body.tail.bias"} <= set(report.partial)
    assert torch.all(g.state_dict()["body.tail.bias"][3] == 2.0)  # the mask's initial bias
    x = images(1, 3, 21, 30)
    with torch.no_grad():
        assert torch.allclose(g.eval()(x).out, framewise.eval()(x), atol=1e-5)
    assert build_generator(g.config).config == g.config


def unet_param_count(cin: int, cout: int, ngf: int, depth: int) -> int:
    """Hand-derived: 4x4 convs with bias; level i has c_i = ngf * min(2**i, 8) channels."""
    c = [ngf * min(2**i, 8) for i in range(depth)]
    conv = lambda i, o: 16 * i * o + o  # noqa: E731
    down = conv(cin, c[0]) + sum(conv(c[i - 1], c[i]) for i in range(1, depth))
    up = conv(2 * c[0], cout) + sum(conv(2 * c[i], c[i - 1]) for i in range(1, depth - 1))
    return down + up + conv(c[-1], c[-2])


@pytest.mark.parametrize("ngf,depth", [(64, 8), (64, 7), (32, 7), (32, 8), (8, 3)])
def test_unet_parameter_count(ngf, depth):
    with torch.device("meta"):  # counting only: no memory, no init time
        g = UNetGenerator(ngf=ngf, depth=depth)
    assert n_params(g) == unet_param_count(3, 3, ngf, depth)


def test_unet_256_matches_pix2pix():
    # pix2pix `unet_256 --norm instance` (ngf 64, 8 downsamplings, biases everywhere):
    # counted from pix2pix's own UnetSkipConnectionBlock code.
    with torch.device("meta"):
        g = UNetGenerator(ngf=64, depth=8, norm="instance")
    assert n_params(g) == 54_409_603
    with torch.device("meta"):
        assert n_params(UNetGenerator(ngf=32, depth=7)) == 10_459_843
        assert n_params(UNetGenerator(ngf=64, depth=7)) == 41_825_667


def test_eval_mode_is_deterministic_and_batch_independent():
    g = UNetGenerator(ngf=8, depth=4).eval()
    x = images(3, 3, 37, 53)
    with torch.no_grad():
        a, b = g(x), g(x)
        single = g(x[1:2])
    assert torch.equal(a, b)
    assert torch.allclose(a[1:2], single, atol=1e-5)  # a frame does not depend on its neighbours
    t = tiny_temporal(flow="learned").eval()
    with torch.no_grad():
        first = t(x).out
        o1 = t(x, x_prev=x.flip(0), y_prev=first)
        o2 = t(x, x_prev=x.flip(0), y_prev=first)
    assert all(torch.equal(p, q) for p, q in zip(o1, o2))


def test_no_batchnorm_no_dropout_anywhere():
    models = [
        UNetGenerator(ngf=8, depth=3),
        tiny_temporal(flow="learned"),
        MultiScaleDiscriminator(6, ndf=8, num_D=2),
        TemporalDiscriminator(ndf=8, strides=(1, 3)),
    ]
    banned = (
        torch.nn.modules.batchnorm._BatchNorm,
        torch.nn.modules.dropout._DropoutNd,
        torch.nn.Dropout,
    )
    for model in models:
        assert not any(isinstance(m, banned) for m in model.modules()), type(model).__name__


def assert_all_grads(model: torch.nn.Module) -> None:
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"no gradient for {name}"
            assert torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, f"zero gradient for {name}"


def test_unet_gradients_reach_all_parameters():
    # norm="none": with a norm, biases right before it cancel out and get (near) zero gradients.
    g = UNetGenerator(ngf=8, depth=4, norm="none")
    g(images(2, 3, 37, 53)).square().mean().backward()
    assert_all_grads(g)


# --------------------------------------------------------------------------------------------
# Discriminators


def patchgan_param_count(cin: int, ndf: int, n_layers: int) -> int:
    conv = lambda i, o: 16 * i * o + o  # noqa: E731
    widths = [ndf * min(2**n, 8) for n in range(n_layers + 1)]
    return (
        conv(cin, ndf)
        + sum(conv(widths[n - 1], widths[n]) for n in range(1, n_layers + 1))
        + conv(widths[-1], 1)
    )


def test_patchgan_shapes_and_parameter_count():
    d = NLayerDiscriminator(6, ndf=8, n_layers=3)
    feats = d(images(2, 3, 37, 53), images(2, 3, 37, 53))
    # 37 -> 18 -> 9 -> 4 (stride 2), then 3, 2 (stride 1).
    assert [f.shape[1] for f in feats] == [8, 16, 32, 64, 1]
    assert feats[-1].shape == (2, 1, 2, 4)
    with torch.device("meta"):
        assert (
            n_params(NLayerDiscriminator(6, ndf=64, n_layers=3))
            == patchgan_param_count(6, 64, 3)
            == 2_767_809
        )
    with pytest.raises(ValueError, match="too small"):
        d(images(1, 6, 20, 64))


def test_multiscale_discriminator_shapes_and_grads():
    d = build_discriminator(
        {"in_channels": 3, "out_channels": 3, "ndf": 8, "num_D": 3, "norm": "none"}
    )
    out = d(images(2, 3, 96, 128), images(2, 3, 96, 128, seed=1))
    assert len(out) == 3 and all(len(feats) == 5 for feats in out)
    assert [feats[-1].shape[-2:] for feats in out] == [(10, 14), (4, 6), (1, 2)]
    sum(feats[-1].mean() for feats in out).backward()
    assert_all_grads(d)
    with pytest.raises(ValueError, match="scale 2"):
        d(images(1, 3, 64, 96), images(1, 3, 64, 96))


def test_temporal_discriminator_shapes_and_grads():
    b, t, h, w = 2, 7, 37, 53
    d = build_temporal_discriminator({"ndf": 8, "n_layers": 3, "strides": [1, 3], "norm": "none"})
    assert d.required_frames == 7
    frames, sources = images(b, t, 3, h, w), images(b, t, 3, h, w, seed=1)
    bwd, fwd = images(b, t, 2, h, w, seed=2), images(b, t, 2, h, w, seed=3)
    out = d(frames, sources, bwd, fwd)
    assert len(out) == 2
    for feats in out:
        assert feats[-1].shape == (b, 1, 2, 4)
    sum(feats[-1].mean() for feats in out).backward()
    assert_all_grads(d)
    with pytest.raises(ValueError, match="need >= 7 frames"):
        d(frames[:, :5], sources[:, :5], bwd[:, :5], fwd[:, :5])
    with pytest.raises(ValueError, match="flow_fwd"):
        d(frames, sources, bwd)


def test_centre_flows_chain_translations():
    b, t, h, w = 1, 7, 16, 20
    bwd = torch.zeros(b, t, 2, h, w)
    bwd[:, :, 0] = 1.0  # content moves left 1 px per frame: t -> t-1 is +1 in x
    fwd = -bwd
    flows = centre_flows(bwd, fwd, 3, [-3, 0, 3])
    assert torch.allclose(flows[:, 0, 0], torch.full((b, h, w), 3.0))
    assert flows[:, 1].eq(0).all()
    assert torch.allclose(flows[:, 2, 0], torch.full((b, h, w), -3.0))
    assert torch.allclose(chain_flows(bwd[:, 1], bwd[:, 2]), 2 * bwd[:, 1])


# --------------------------------------------------------------------------------------------
# Temporal generator


@pytest.mark.parametrize("size", [(37, 53), (64, 96)])
@pytest.mark.parametrize("flow", ["dis", "learned"])
def test_temporal_generator_shapes(size, flow):
    b = 2
    g = tiny_temporal(flow=flow, use_prev_input=True, in_channels=1)
    x, x_prev = images(b, 1, *size), images(b, 1, *size, seed=1)
    first = g(x_prev)
    assert first.out.shape == (b, 3, *size) and first.mask.eq(1).all()
    assert first.warped.eq(0).all() and first.flow.eq(0).all() and first.valid.eq(0).all()
    kw = {"flow": torch.zeros(b, 2, *size)} if flow == "dis" else {}
    out = g(x, x_prev=x_prev, y_prev=first.out, **kw)
    expected = {"out": 3, "image": 3, "mask": 1, "warped": 3, "flow": 2, "valid": 1}
    for name, channels in expected.items():
        assert getattr(out, name).shape == (b, channels, *size), name
    assert ((out.mask >= 0) & (out.mask <= 1)).all()
    assert torch.allclose(out.out, out.mask * out.image + (1 - out.mask) * out.warped)


def test_temporal_mask_forced_to_one_at_reset():
    g = tiny_temporal().eval()
    x, y_prev = images(2, 3, 21, 30), images(2, 3, 21, 30, seed=1)
    y_prev[0] = float("nan")  # element 0 starts a new shot: its "previous" output is garbage
    flow = torch.randn(2, 2, 21, 30)
    out = g(x, y_prev=y_prev, flow=flow, reset=torch.tensor([True, False]))
    assert out.mask[0].eq(1).all() and out.mask[1].lt(1).all()
    assert torch.equal(out.out[0], out.image[0])
    assert out.warped[0].eq(0).all() and out.flow[0].eq(0).all() and torch.isfinite(out.out).all()
    alone = g(x[:1])  # the same frame as the first of a shot, on its own
    assert torch.allclose(out.out[:1], alone.out, atol=1e-5)


def test_mask_power_raises_the_blend_mask_and_keeps_a_reset_new():
    """``mask_power`` (run's stability=): the mask becomes m ** p, the blend follows it; at a
    reset m = 1 stays 1; p = 1 is the model as trained."""
    g = tiny_temporal().eval()
    x, y_prev = images(2, 3, 21, 30), images(2, 3, 21, 30, seed=1)
    kw = dict(y_prev=y_prev, flow=torch.randn(2, 2, 21, 30), reset=torch.tensor([True, False]))
    base, same, steady = g(x, **kw), g(x, **kw, mask_power=1.0), g(x, **kw, mask_power=3.0)
    assert torch.equal(base.out, same.out)
    assert torch.allclose(steady.mask[1], base.mask[1] ** 3) and steady.mask[0].eq(1).all()
    assert torch.allclose(steady.out, steady.mask * steady.image + (1 - steady.mask) * steady.warped)
    assert torch.equal(steady.out[0], base.out[0])


def test_temporal_without_validity_input_ignores_the_validity():
    """use_validity=False: the body sees x, warped, flow (8 channels for RGB), so the validity
    given changes nothing; it is still reported (training masks its losses with it)."""
    g = tiny_temporal(use_validity=False).eval()
    assert g.body.down[0][0].in_channels == 3 + 3 + 2
    assert tiny_temporal().body.down[0][0].in_channels == 3 + 3 + 2 + 1
    x, y_prev, flow = images(1, 3, 21, 30), images(1, 3, 21, 30, seed=1), torch.randn(1, 2, 21, 30)
    a = g(x, y_prev=y_prev, flow=flow, valid=torch.zeros(1, 1, 21, 30))
    b = g(x, y_prev=y_prev, flow=flow, valid=torch.ones(1, 1, 21, 30))
    assert torch.equal(a.out, b.out) and a.valid.eq(0).all()


def test_temporal_input_checks():
    g = tiny_temporal()
    x = images(1, 3, 16, 16)
    with pytest.raises(ValueError, match="pass flow"):
        g(x, x_prev=x, y_prev=x)
    with pytest.raises(ValueError, match="y_prev"):
        g(x, y_prev=images(1, 3, 16, 17))
    with pytest.raises(ValueError, match="one flag per batch"):
        g(x, y_prev=x, flow=torch.zeros(1, 2, 16, 16), reset=torch.tensor([True, False]))
    with pytest.raises(ValueError, match="needs x_prev"):
        tiny_temporal(flow="learned")(x, y_prev=x)
    with pytest.raises(ValueError, match="flow source"):
        tiny_temporal(flow="farneback")


def test_temporal_gradients_reach_all_parameters():
    g = tiny_temporal(flow="learned", use_prev_input=True, norm="none")
    x, x_prev = images(2, 3, 37, 53), images(2, 3, 37, 53, seed=1)
    first = g(x_prev)
    out = g(x, x_prev=x_prev, y_prev=first.out)
    (out.out.square().mean() + out.valid.mean()).backward()
    assert_all_grads(g)


def test_learned_flow_shapes():
    head = LearnedFlow(in_channels=3, width=8, levels=3)
    flow, valid = head(images(2, 3, 37, 53), images(2, 3, 37, 53, seed=1))
    assert flow.shape == (2, 2, 37, 53) and valid.shape == (2, 1, 37, 53)
    assert ((valid > 0) & (valid < 1)).all()
    with pytest.raises(ValueError):
        head(images(2, 3, 37, 53), images(2, 3, 37, 52))


def test_init_from_framewise_copies_matching_weights():
    torch.manual_seed(0)
    framewise = UNetGenerator(ngf=8, depth=3, residual=False)
    for p in framewise.parameters():  # "trained": anything but the initialisation
        p.data.normal_(0, 0.1)
    g = tiny_temporal(flow="learned")
    report = g.init_from_framewise(framewise)
    n_body = len(framewise.state_dict())
    # the first conv (extra inputs) and the last layer (extra mask output) are copied in part
    last = "body.up.0.1"
    assert len(report.copied) == n_body - 3
    assert sorted(report.partial) == sorted(["body.down.0.0.weight", f"{last}.weight", f"{last}.bias"])
    assert all(name.startswith("flow_net.") for name in report.skipped)
    assert torch.all(g.state_dict()[f"{last}.bias"][3] == 2.0)  # the mask's initial bias stays
    assert "copied" in str(report)
    g.eval(), framewise.eval()
    x = images(1, 3, 21, 30)
    with torch.no_grad():
        reference = framewise(x)
        assert torch.allclose(g(x).out, reference, atol=1e-5)
        # The extra inputs start with zero weights: the image branch is still the frame-wise one.
        step = g(x, x_prev=images(1, 3, 21, 30, seed=1), y_prev=reference)
    assert torch.allclose(step.image, reference, atol=1e-5)


def test_build_generator_round_trip():
    cfg = {"name": "temporal", "ngf": 8, "depth": 3, "flow": "learned", "residual": True}
    g = build_generator(cfg)
    assert g.flow_source == "learned" and g.multiple == 8 and g.is_temporal
    again = build_generator(json.loads(json.dumps(g.config)))
    assert again.config == g.config
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in g.state_dict().items()
    }
    framewise = build_generator({"ngf": 8, "depth": 3})
    assert framewise.flow_source == "none" and not framewise.is_temporal
    assert build_generator(framewise.config).config == framewise.config
    with pytest.raises(ValueError, match="unknown temporal generator config key"):
        build_generator({"name": "temporal", "ngf": 8, "flwo": "dis"})
    with pytest.raises(ValueError, match="unknown generator"):
        build_generator({"name": "resnet"})
    assert build_generator({"_target_": "ignored", "ngf": 4, "depth": 2}).multiple == 4


# --------------------------------------------------------------------------------------------
# RAFT (local weights only)


def test_raft_without_weights_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="nothing is downloaded"):
        RAFTFlow(None)
    with pytest.raises(UserError, match="not found"):
        build_generator(
            {"name": "temporal", "flow": "raft", "raft_weights": str(tmp_path / "nope.pth")}
        )


def test_raft_loads_a_local_state_dict(tmp_path):
    from torchvision.models.optical_flow import raft_small

    path = tmp_path / "raft_small.pth"
    torch.save({"state_dict": raft_small(weights=None).state_dict()}, path)
    g = tiny_temporal(flow="raft", raft_weights=str(path), raft_iters=1)
    g.train()
    assert not g.flow_net.raft.training  # frozen, always in eval mode
    x = images(1, 3, 37, 53)
    out = g(x, x_prev=x.roll(1, -1), y_prev=x)
    assert out.flow.shape == (1, 2, 37, 53) and out.valid.shape == (1, 1, 37, 53)
    bad = tmp_path / "bad.pth"
    torch.save({"foo": torch.zeros(1)}, bad)
    with pytest.raises(UserError, match="not a torchvision RAFT"):
        RAFTFlow(str(bad))


@pytest.mark.skipif(
    not os.environ.get("V2V_RAFT_WEIGHTS"), reason="set V2V_RAFT_WEIGHTS to a RAFT-small file"
)
def test_raft_recovers_a_translation():
    torch.manual_seed(0)
    texture = F.interpolate(
        torch.rand(1, 3, 40, 52), size=(160, 208), mode="bicubic", align_corners=False
    )
    texture = texture.clamp(0, 1) * 2 - 1
    previous, current = texture[..., :, 0:200], texture[..., :, 3:203]  # content moves 3 px left
    raft = RAFTFlow(os.environ["V2V_RAFT_WEIGHTS"], "small")
    flow, valid = raft(current, previous)
    interior = flow[0, :, 16:-16, 16:-16]
    assert (interior[0] - 3.0).abs().median() < 0.5 and interior[1].abs().median() < 0.5


# --------------------------------------------------------------------------------------------
# A tiny temporal model overfits a 4-frame clip


def shifted_clip(
    frames: int = 4, size: int = 32, shift: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Source frames of a smooth texture moving right ``shift`` px per frame, and their flow."""
    torch.manual_seed(0)
    texture = F.interpolate(
        torch.rand(1, 3, 8, 12), size=(size, size + 16), mode="bilinear", align_corners=False
    )
    texture = texture * 2 - 1
    clip = torch.stack(
        [texture[..., 8 - t * shift : 8 - t * shift + size] for t in range(frames)], dim=1
    )
    flow = torch.zeros(1, 2, size, size)
    flow[:, 0] = -shift  # frame t at x is frame t-1 at x - shift
    return clip, flow


def test_tiny_temporal_model_overfits_a_clip():
    clip, flow = shifted_clip()
    assert torch.allclose(warp_loss(clip[:, 2], clip[:, 1], flow), torch.tensor(0.0), atol=0.05)
    target = -0.8 * clip[:, :, [2, 0, 1]]  # a colour mapping to learn
    g = tiny_temporal(norm="instance")
    opt = torch.optim.Adam(g.parameters(), lr=3e-3, betas=(0.5, 0.999))

    def clip_loss() -> torch.Tensor:
        y_prev, loss = None, 0.0
        for t in range(clip.shape[1]):
            out = g(clip[:, t], y_prev=y_prev, flow=None if y_prev is None else flow)
            loss = loss + F.l1_loss(out.out, target[:, t])
            y_prev = out.out
        return loss / clip.shape[1]

    losses = []
    for _ in range(40):
        loss = clip_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_detail_sigma_keeps_the_inputs_detail_and_changes_only_its_low_frequencies():
    """deflicker's output mode: x + low_pass(out - x): whatever the blend does, the difference
    to the input is smooth (its own low-pass), so warping the past cannot blur the picture."""
    from vid2vid_lite.nn.temporal import low_pass

    torch.manual_seed(0)
    model = build_generator({"name": "temporal", "in_channels": 6, "ngf": 4, "depth": 3, "residual": True,
                             "use_validity": False, "mask_bias": -3.0, "detail_sigma": 2.0})
    assert model.config["detail_sigma"] == 2.0
    x = torch.rand(1, 6, 32, 40) * 2 - 1
    y_prev = torch.rand(1, 3, 32, 40) * 2 - 1  # a noisy past: mostly copied (mask ~0.05)
    out = model(x, y_prev=y_prev, flow=torch.zeros(1, 2, 32, 40)).out
    diff = out - x[:, :3]
    assert diff.abs().mean() > 0.05  # the past does come through...
    rough = (diff[..., 1:] - diff[..., :-1]).abs().mean()
    noise = (y_prev[..., 1:] - y_prev[..., :-1]).abs().mean()
    assert rough < 0.1 * noise  # ...but only its low frequencies
    with pytest.raises(ValueError, match="residual"):
        build_generator({"name": "temporal", "detail_sigma": 2.0, "residual": False})


def test_blend_full_res_copies_the_warped_past_with_its_detail():
    """blend_full_res: only the new frame's correction is low-passed; where the mask copies the
    past (mask ~0), its fine detail comes too (which the plain detail_sigma mode cannot give),
    and where the mask generates (mask ~1) the output is x plus a smooth correction."""
    torch.manual_seed(0)
    config = {"name": "temporal", "in_channels": 6, "ngf": 4, "depth": 3, "residual": True, "use_validity": False,
              "detail_sigma": 1.0, "body_scale": 2, "blend_full_res": True}
    x = torch.rand(1, 6, 33, 41) * 2 - 1
    y_prev = torch.rand(1, 3, 33, 41) * 2 - 1
    zero = torch.zeros(1, 2, 33, 41)
    copy = build_generator({**config, "mask_bias": -12.0})
    assert copy.config["blend_full_res"] is True
    assert torch.allclose(copy(x, y_prev=y_prev, flow=zero).out, y_prev, atol=1e-4)
    # the plain mode with the same weights: only the past's low frequencies come through
    plain = build_generator({**config, "mask_bias": -12.0, "blend_full_res": False})
    plain.load_state_dict(copy.state_dict())
    diff = plain(x, y_prev=y_prev, flow=zero).out - x[:, :3]
    assert (diff[..., 1:] - diff[..., :-1]).abs().mean() < 0.5 * (y_prev[..., 1:] - y_prev[..., :-1]).abs().mean()
    fresh = build_generator({**config, "mask_bias": 12.0})
    with torch.no_grad():
        fresh.body.last.bias[:3] = 0.3  # a flat correction of tanh(0.3) (x kept off the clamp)
    x = x * 0.5
    out = fresh(x, y_prev=y_prev, flow=zero).out
    assert torch.allclose(out, x[:, :3] + math.tanh(0.3), atol=1e-4)
    with pytest.raises(ValueError, match="blend_full_res"):
        build_generator({**config, "detail_sigma": 0.0, "body_scale": 1})


def test_body_scale_runs_the_body_at_a_fraction_of_the_size_and_returns_a_full_size_output():
    """body_scale=2: the body sees box-averaged inputs at half the size (odd sizes too), the
    flow in the body's pixels; out comes back at the frame's size (image and mask stay at the
    body's: inference does not read them), and it still differs from x[t] only by a smooth
    correction."""
    torch.manual_seed(0)
    config = {"name": "temporal", "in_channels": 6, "ngf": 4, "depth": 3, "residual": True,
              "use_validity": False, "mask_bias": -3.0, "detail_sigma": 2.0, "body_scale": 2}
    model = build_generator(config)
    seen = {}
    model.body.register_forward_hook(lambda m, args, out: seen.update(shape=tuple(args[0].shape), body_in=args[0]))
    x = torch.rand(1, 6, 33, 41) * 2 - 1
    y_prev = torch.rand(1, 3, 33, 41) * 2 - 1
    flow = torch.full((1, 2, 33, 41), 4.0)
    result = model(x, y_prev=y_prev, flow=flow)
    assert seen["shape"][-2:] == (24, 24)  # 17 x 21 padded to the body's multiple (8)
    assert torch.allclose(seen["body_in"][:, 9:11, 4:12, 4:12], torch.full((1, 2, 8, 8), 4.0 / 2 / 20.0))
    assert result.out.shape[-2:] == (33, 41)
    assert result.image.shape[-2:] == result.mask.shape[-2:] == (17, 21)  # the body's size: not upsampled
    diff = result.out - x[:, :3]
    assert diff.abs().mean() > 0.05
    rough = (diff[..., 1:] - diff[..., :-1]).abs().mean()
    assert rough < 0.1 * (y_prev[..., 1:] - y_prev[..., :-1]).abs().mean()
    with pytest.raises(ValueError, match="body_scale"):
        build_generator({**config, "detail_sigma": 0.0})
