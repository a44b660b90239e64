"""×2 super-resolution networks: Lanczos as OpenCV computes it, an untrained net is Lanczos,
the recurrent one starts from the frame-wise one and copies its warped past where told to."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vid2vid_lite.nn.sr import SRNet, TemporalSRNet, lanczos_up2, sr_param_count


@pytest.mark.parametrize("size", [(13, 17), (24, 32), (1, 5)])
def test_lanczos_up2_is_opencvs_lanczos4_to_the_border(size):
    rng = np.random.default_rng(0)
    image = rng.random((*size, 3)).astype(np.float32)
    expected = cv2.resize(image, (2 * size[1], 2 * size[0]), interpolation=cv2.INTER_LANCZOS4)
    if expected.ndim == 2:
        expected = expected[..., None]
    got = lanczos_up2(torch.from_numpy(image).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-5


def test_an_untrained_sr_net_is_lanczos_and_small():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 15, 22) * 2 - 1
    net = SRNet()
    assert torch.equal(net(x), lanczos_up2(x).clamp(-1, 1))
    assert net(x).shape == (2, 3, 30, 44)
    assert 50_000 < sr_param_count(net) < 80_000  # 7 layers of 32 channels: ~60k, far under 8 MB


def trained_a_little(net: torch.nn.Module) -> torch.nn.Module:
    """Non-zero weights everywhere (as after training)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net


def test_the_temporal_net_starts_as_the_framewise_one():
    framewise = trained_a_little(SRNet()).eval()
    temporal = TemporalSRNet()
    temporal.init_from_framewise(framewise)
    x = torch.rand(1, 3, 16, 20) * 2 - 1
    y_prev = torch.rand(1, 3, 32, 40) * 2 - 1
    flow = torch.randn(1, 2, 16, 20)
    with torch.no_grad():
        result = temporal(x, y_prev=y_prev, flow=flow, valid=torch.ones(1, 1, 16, 20), reset=torch.tensor([False]))
        assert torch.allclose(result.image, framewise(x), atol=1e-5)  # the past's inputs start at zero
        assert torch.allclose(result.mask, torch.sigmoid(torch.tensor(2.0)).expand_as(result.mask))


def test_the_temporal_net_resets_and_copies_its_warped_past():
    net = trained_a_little(TemporalSRNet()).eval()
    x = torch.rand(2, 3, 8, 12) * 2 - 1
    y_prev = torch.rand(2, 3, 16, 24) * 2 - 1
    zero = torch.zeros(2, 2, 8, 12)
    with torch.no_grad():
        fresh = net(x)  # no past: every row resets, the new image alone
        assert torch.equal(fresh.mask, torch.ones_like(fresh.mask)) and torch.equal(fresh.out, fresh.image)
        net.body.convs[-1].bias[12:] = -30.0  # mask ~ 0: copy the warped past
        kept = net(x, y_prev=y_prev, flow=zero, valid=torch.ones(2, 1, 8, 12), reset=torch.tensor([False, True]))
    assert torch.allclose(kept.out[0], y_prev[0], atol=1e-5)  # zero flow: the past itself
    assert torch.equal(kept.out[1], kept.image[1])  # the row that resets takes its new image
    assert kept.out.shape == kept.flow.shape[:1] + (3, 16, 24) and kept.valid.shape == (2, 1, 16, 24)


def test_the_flow_is_scaled_to_the_output():
    """A low-resolution flow of one pixel is two pixels at ×2: a past shifted by two output
    pixels lines up."""
    net = TemporalSRNet().eval()
    with torch.no_grad():
        net.body.convs[-1].bias[12:] = -30.0
        past = torch.rand(1, 3, 16, 24) * 2 - 1
        flow = torch.zeros(1, 2, 8, 12)
        flow[:, 0] = 1.0  # frame t's pixel x came from x + 1 (low resolution)
        out = net(torch.zeros(1, 3, 8, 12), y_prev=past, flow=flow, reset=torch.tensor([False])).out
    assert torch.allclose(out[..., :-2], past[..., 2:], atol=1e-5)


def test_a_training_step_lowers_the_error():
    torch.manual_seed(0)
    target = F.interpolate(torch.rand(4, 3, 8, 8), size=(32, 32), mode="bilinear", align_corners=False) * 2 - 1
    x = F.avg_pool2d(target, 2)
    net = SRNet(channels=16, layers=4)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = (net(x) - target).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
