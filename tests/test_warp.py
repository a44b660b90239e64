"""The one warp and the one occlusion test (vid2vid_lite.nn.warp)."""

from __future__ import annotations

import pytest
import torch

from vid2vid_lite.nn.warp import occlusion_mask, warp


def constant_flow(b: int, h: int, w: int, dx: float, dy: float) -> torch.Tensor:
    flow = torch.empty(b, 2, h, w)
    flow[:, 0], flow[:, 1] = dx, dy
    return flow


@pytest.mark.parametrize("size", [(37, 53), (64, 96), (1, 5)])
def test_zero_flow_is_identity(size):
    torch.manual_seed(0)
    image = torch.rand(2, 3, *size)
    out = warp(image, torch.zeros(2, 2, *size))
    # align_corners=True makes zero flow the identity; float grid rounding gives ~2e-6.
    assert torch.allclose(out, image, atol=1e-5)


@pytest.mark.parametrize("dx,dy", [(3, -2), (-1, 4), (0, 1)])
def test_integer_shift_equals_roll_away_from_border(dx, dy):
    torch.manual_seed(0)
    h, w = 29, 41
    image = torch.rand(1, 3, h, w)
    out = warp(image, constant_flow(1, h, w, dx, dy))
    # out[y, x] = image[y + dy, x + dx]  <=>  roll by (-dy, -dx).
    rolled = torch.roll(image, shifts=(-dy, -dx), dims=(-2, -1))
    m = max(abs(dx), abs(dy))
    assert torch.allclose(
        out[..., m : h - m, m : w - m], rolled[..., m : h - m, m : w - m], atol=1e-5
    )


def test_border_padding_repeats_edge():
    image = torch.arange(12.0).view(1, 1, 3, 4)
    out = warp(image, constant_flow(1, 3, 4, 10.0, 0.0))
    assert torch.allclose(out, image[..., -1:].expand_as(image), atol=1e-5)


def test_gradients_reach_image_and_flow():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 16, 20, requires_grad=True)
    flow = (torch.rand(2, 2, 16, 20) * 4 - 2).requires_grad_()
    weights = torch.rand(2, 3, 16, 20)
    (warp(image, flow) * weights).sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert flow.grad is not None and flow.grad.abs().sum() > 0
    assert torch.isfinite(image.grad).all() and torch.isfinite(flow.grad).all()


def test_warp_rejects_bad_shapes():
    with pytest.raises(ValueError):
        warp(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError):
        warp(torch.zeros(1, 3, 8, 8), torch.zeros(1, 2, 8, 9))


def test_occlusion_passes_pure_translation():
    h, w = 24, 32
    bwd = constant_flow(1, h, w, -3.0, 1.0)  # t -> t-1
    fwd = constant_flow(1, h, w, 3.0, -1.0)  # t-1 -> t
    assert occlusion_mask(bwd, fwd).eq(1).all()


def test_occlusion_flags_disoccluded_region():
    # A square moves right by 4 px over a static background: at frame t it covers columns
    # 14..23; at t-1 it covered 10..19, so columns 10..13 of frame t are newly revealed.
    h, w, d = 32, 40, 4
    rows = slice(8, 24)
    bwd = torch.zeros(1, 2, h, w)
    bwd[0, 0, rows, 14:24] = -d
    fwd = torch.zeros(1, 2, h, w)
    fwd[0, 0, rows, 10:20] = d
    valid = occlusion_mask(bwd, fwd, motion_boundaries=False)[0, 0]
    assert valid[rows, 10:14].eq(0).all()  # disoccluded background
    assert valid[rows, 15:23].eq(1).all()  # the square itself is tracked
    assert valid[:, :8].eq(1).all() and valid[:4].eq(1).all()  # far background
    with_boundaries = occlusion_mask(bwd, fwd)[0, 0]
    assert with_boundaries[rows, 13].eq(0).all()  # the square's left edge is a motion boundary
    assert with_boundaries[rows, 10:14].eq(0).all()
