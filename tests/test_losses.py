"""Each loss against a value computed by hand on a tiny tensor (vid2vid_lite.losses)."""

from __future__ import annotations

import math

import pytest
import torch

from vid2vid_lite.errors import UserError
from vid2vid_lite.losses import (
    GANLoss,
    VGGPerceptualLoss,
    feature_matching_loss,
    flow_loss,
    mask_regularizer,
    masked_l1_loss,
    validity_loss,
    warp_loss,
)

# A (2, 1, 2, 2) patch-logit map.
VALUES = [0.0, 1.0, -1.0, 2.0, 0.5, -0.5, 3.0, -2.0]
LOGITS = torch.tensor(VALUES).view(2, 1, 2, 2)


def close(a: torch.Tensor, b: float) -> bool:
    return math.isclose(a.item(), b, rel_tol=1e-6, abs_tol=1e-6)


def test_vanilla_gan_loss():
    loss = GANLoss("vanilla")
    softplus = lambda v: math.log(1 + math.exp(v))  # noqa: E731
    # BCE(x, 1) = log(1 + e^-x); BCE(x, 0) = log(1 + e^x)
    assert close(loss(LOGITS, True), sum(softplus(-v) for v in VALUES) / 8)
    assert close(loss(LOGITS, False), sum(softplus(v) for v in VALUES) / 8)


def test_lsgan_loss():
    loss = GANLoss("lsgan")
    assert close(loss(LOGITS, True), 21.5 / 8)  # (x - 1)^2: 1 0 4 1 .25 2.25 4 9
    assert close(loss(LOGITS, False), 19.5 / 8)  # x^2: 0 1 1 4 .25 .25 9 4
    assert close(loss(LOGITS, True, for_discriminator=False), 21.5 / 8)


def test_hinge_loss():
    loss = GANLoss("hinge")
    assert close(loss(LOGITS, True), 8 / 8)  # relu(1 - x): 1 0 2 0 .5 1.5 0 3
    assert close(loss(LOGITS, False), 12 / 8)  # relu(1 + x): 1 2 0 3 1.5 .5 4 0
    assert close(loss(LOGITS, True, for_discriminator=False), -3 / 8)  # -mean(x)
    with pytest.raises(ValueError, match="target_is_real=True"):
        loss(LOGITS, False, for_discriminator=False)


def test_gan_loss_uses_last_feature_and_averages_scales():
    loss = GANLoss("lsgan")
    feature = torch.full((1, 4, 2, 2), 7.0)
    scale_a = [feature, torch.zeros(1, 1, 2, 2)]  # real loss 1
    scale_b = [feature, torch.ones(1, 1, 1, 1)]  # real loss 0
    assert close(loss(scale_a, True), 1.0)
    assert close(loss([scale_a, scale_b], True), 0.5)
    with pytest.raises(ValueError, match="unknown GAN loss"):
        GANLoss("wgan")


def test_feature_matching_loss():
    zeros = torch.zeros(1, 2, 2, 2)
    real = [[zeros, zeros, zeros], [zeros, zeros, zeros]]
    fake_a = [
        torch.ones(1, 2, 2, 2),
        torch.full((1, 2, 2, 2), -3.0),
        torch.full((1, 1, 2, 2), 100.0),
    ]
    fake_b = [zeros.clone(), torch.full((1, 2, 2, 2), 2.0), zeros.clone()]
    # scale a: (1 + 3) / 2 = 2; scale b: (0 + 2) / 2 = 1; logits ignored; mean over scales 1.5
    assert close(feature_matching_loss([fake_a, fake_b], real), 1.5)
    real_leaf = torch.zeros(1, 2, 2, 2, requires_grad=True)
    fake_leaf = torch.ones(1, 2, 2, 2, requires_grad=True)
    feature_matching_loss([fake_leaf, zeros], [real_leaf, zeros]).backward()
    assert real_leaf.grad is None and fake_leaf.grad is not None  # real features are detached


def test_masked_l1_loss():
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    target = torch.zeros(1, 1, 2, 2)
    assert close(masked_l1_loss(pred, target), 2.5)
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 2, 2)
    assert close(masked_l1_loss(pred, target, mask), 2.0)  # (1 + 3) / 2
    assert close(masked_l1_loss(pred, target, torch.zeros(1, 1, 2, 2)), 0.0)


def test_warp_loss_zero_flow_with_validity():
    current = (
        torch.arange(1.0, 4.0).view(1, 3, 1, 1).expand(1, 3, 2, 2).contiguous()
    )  # channels 1, 2, 3
    previous = torch.zeros(1, 3, 2, 2)
    valid = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 2, 2)
    # two valid pixels, each with channel errors 1, 2, 3: mean 2
    assert close(warp_loss(current, previous, torch.zeros(1, 2, 2, 2), valid), 2.0)
    assert close(warp_loss(current, previous, torch.zeros(1, 2, 2, 2)), 2.0)


def test_warp_loss_vanishes_for_a_consistent_shift():
    torch.manual_seed(0)
    previous = torch.rand(1, 3, 12, 16)
    current = torch.roll(previous, shifts=2, dims=-1)  # content moves 2 px right
    flow = torch.zeros(1, 2, 12, 16)
    flow[:, 0] = -2.0
    valid = torch.zeros(1, 1, 12, 16)
    valid[..., 2:] = 1.0  # the first two columns wrapped around: occluded
    assert close(warp_loss(current, previous, flow, valid), 0.0)
    assert warp_loss(current, previous, torch.zeros_like(flow), valid) > 0.1


def test_flow_loss():
    pred = torch.zeros(1, 2, 2, 2)
    target = torch.stack([torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.full((2, 2), -1.0)])[None]
    valid = torch.tensor([[1.0, 1.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    # valid pixels: |1|+|-1|, |2|+|-1|, |4|+|-1| = 10 over 3 pixels x 2 components
    assert close(flow_loss(pred, target, valid), 10 / 6)
    assert close(flow_loss(pred, target), (10 + 4) / 8)
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        flow_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))


def test_mask_regularizer():
    mask = torch.tensor([[1.0, 0.5], [0.0, 0.25]]).view(1, 1, 2, 2)
    assert close(mask_regularizer(mask), 2.25 / 4)  # 1 - m: 0 .5 1 .75
    valid = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    assert close(mask_regularizer(mask, valid), 2.25 / 4 + 1.75 / 4)  # copying occluded: 1 + .75
    # a mask at half the size (model.body_scale=2) meets the validity area-averaged to its size
    fine_valid = valid.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    assert close(mask_regularizer(mask, fine_valid), 2.25 / 4 + 1.75 / 4)
    with pytest.raises(ValueError, match="differ"):
        mask_regularizer(mask, torch.ones(2, 1, 4, 4))


def test_validity_loss():
    pred = torch.tensor([0.5, 0.9]).view(1, 1, 1, 2)
    target = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    assert close(validity_loss(pred, target), -(math.log(0.5) + math.log(0.1)) / 2)


def test_vgg_loss_needs_local_weights(tmp_path):
    with pytest.raises(UserError, match="nothing is downloaded"):
        VGGPerceptualLoss(None)
    with pytest.raises(UserError, match="not found"):
        VGGPerceptualLoss(tmp_path / "vgg19.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(UserError, match="not a VGG19 state dict"):
        VGGPerceptualLoss(bad)


def test_vgg_loss_with_local_random_weights(tmp_path):
    from torchvision.models import vgg19

    with torch.device("meta"):
        shapes = {
            k: v.shape
            for k, v in vgg19(weights=None).state_dict().items()
            if k.startswith("features.")
        }
    torch.manual_seed(0)
    path = tmp_path / "vgg19.pth"
    torch.save({k: torch.randn(s) * 0.05 for k, s in shapes.items()}, path)
    loss = VGGPerceptualLoss(path)
    loss.train()
    assert not loss.training and not any(p.requires_grad for p in loss.parameters())
    x = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_()
    y = torch.rand(1, 3, 32, 32) * 2 - 1
    assert close(loss(y, y), 0.0)
    value = loss(x, y)
    value.backward()
    assert value > 0 and x.grad.abs().sum() > 0


def test_long_term_loss_follows_chained_flows_to_the_first_frame():
    """A pan with exact flow: frame t is frame 0 moved by t·v, so the long-term term vanishes;
    a brightness change after frame 1 shows, and so does a wrong flow."""
    from vid2vid_lite.datasets.synthetic import camera_pan
    from vid2vid_lite.losses import long_term_loss

    pan = camera_pan("astronaut", 5, (48, 64), velocity=(2.0, 1.0))
    frames = torch.from_numpy(pan.frames).permute(0, 3, 1, 2).float().unsqueeze(0) / 255.0
    flows, valid = torch.from_numpy(pan.flows).unsqueeze(0), torch.from_numpy(pan.validity).unsqueeze(0)
    assert long_term_loss(frames, flows, valid) < 1e-5
    brighter = frames.clone()
    brighter[:, 2:] += 0.1
    assert abs(long_term_loss(brighter, flows, valid).item() - 0.1) < 1e-4
    assert long_term_loss(frames, torch.zeros_like(flows), valid) > 0.02
    with pytest.raises(ValueError, match="at least 3"):
        long_term_loss(frames[:, :2], flows[:, :2], valid[:, :2])


def _video_gan(*overrides: str):
    """The training's VideoGAN for a tiny temporal deflicker model and ``overrides``."""
    from media import train_config

    from vid2vid_lite.datasets.tasks import get_task
    from vid2vid_lite.engine.config import training_precision
    from vid2vid_lite.engine.gan import VideoGAN

    cfg = train_config("experiment=smoke", "model=temporal", "data.task=deflicker", "loss.warp=1", "loss.long=1",
                       *overrides)
    return VideoGAN(cfg, get_task("deflicker"), training_precision("fp32", torch.device("cpu")))


def test_relative_warp_terms_penalise_only_change_beyond_the_targets_own():
    """loss.warp_relative: an output equal to a flickering target costs nothing in the warp and
    long-term terms (they cost without it); a steady output beside it costs the target's flicker."""
    torch.manual_seed(0)
    b, t = 1, 4
    flicker = 0.2 * torch.arange(t, dtype=torch.float32).view(1, t, 1, 1, 1)
    target = 0.5 * torch.rand(b, 1, 3, 8, 8) - 0.5 + flicker  # a still scene whose tone changes
    batch = {"y": target, "flow": torch.zeros(b, t, 2, 8, 8), "valid": torch.ones(b, t, 1, 8, 8)}
    plain, relative = _video_gan(), _video_gan("loss.warp_relative=true")
    gen = {"out": target.clone(), "mask": None}
    assert close(relative._pair_losses(batch, gen)["warp"], 0.0)
    assert close(relative._pair_losses(batch, gen)["long"], 0.0)
    assert close(plain._pair_losses(batch, gen)["warp"], 0.2)  # its tone changes by 0.2 a frame
    steady = {"out": target[:, :1].expand(b, t, 3, 8, 8).clone(), "mask": None}
    assert close(plain._pair_losses(batch, steady)["warp"], 0.0)
    assert relative._pair_losses(batch, steady)["warp"].item() > 0.1
