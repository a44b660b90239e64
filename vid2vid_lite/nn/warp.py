"""The one warp and the one occlusion test used by models, losses and metrics.

Flow convention: ``flow`` has shape ``(B, 2, H, W)``, channels ``(dx, dy)`` in pixels.  It is a
*backward* flow from the frame we want to predict (t) to the frame we sample from (t-1):
pixel ``p`` of frame t is found at ``p + flow[p]`` in frame t-1.  So
``warp(y[t-1], flow[t->t-1])`` is y[t-1] aligned to frame t.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def _check_flow(image: torch.Tensor, flow: torch.Tensor) -> None:
    if image.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(
            f"warp expects image (B, C, H, W) and flow (B, 2, H, W), got {tuple(image.shape)} "
            f"and {tuple(flow.shape)}"
        )
    if image.shape[0] != flow.shape[0] or image.shape[-2:] != flow.shape[-2:]:
        raise ValueError(
            f"image {tuple(image.shape)} and flow {tuple(flow.shape)} differ in batch or size"
        )


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Pixel coordinates ``(1, 2, H, W)``: channel 0 is x (column), channel 1 is y (row)."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack((xs, ys)).unsqueeze(0)


@functools.lru_cache(maxsize=16)
def _grid_constants(height: int, width: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The identity sampling grid ``(1, H, W, 2)`` in ``grid_sample``'s ``[-1, 1]`` units and
    the pixels -> units scale ``(2,)`` per axis ``(x, y)``, for ``align_corners=True``: pixel
    ``x`` maps to ``2x / (W - 1) - 1`` (``max(…, 1)`` keeps 1-pixel sizes finite).

    Cached, as they are the same for every frame of a video; made outside any inference mode so
    that training may use them too."""
    with torch.inference_mode(False), torch.no_grad():
        scale = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], device=device, dtype=dtype)
        base = pixel_grid(height, width, device=device, dtype=dtype).permute(0, 2, 3, 1) * scale - 1.0
    return base.contiguous(), scale


def warp(image: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Backward-warp ``image`` (B, C, H, W) by ``flow`` (B, 2, H, W) in pixels.

    ``out[p] = image[p + flow[p]]``, sampled with ``grid_sample(align_corners=True,
    padding_mode="border")``.  With ``align_corners=True`` pixel ``x`` maps to
    ``2x / (W - 1) - 1``, so zero flow is the identity (the pitfall vid2vid fell into).
    Differentiable in both ``image`` and ``flow``.
    """
    _check_flow(image, flow)
    _, _, h, w = image.shape
    base, scale = _grid_constants(h, w, flow.device, flow.dtype)
    # base + flow * scale in one fused op, straight into grid_sample's (B, H, W, 2) layout.
    grid = torch.addcmul(base, flow.permute(0, 2, 3, 1), scale)
    return F.grid_sample(image, grid.to(image.dtype), mode=mode, padding_mode="border", align_corners=True)


def occlusion_mask(
    flow_bwd: torch.Tensor, flow_fwd: torch.Tensor, motion_boundaries: bool = True
) -> torch.Tensor:
    """Validity map ``(B, 1, H, W)``: 1 where the backward flow can be trusted, 0 where occluded.

    ``flow_bwd`` is the flow t -> t-1 (the one used to warp), ``flow_fwd`` the flow t-1 -> t.
    The forward-backward consistency test of Sundaram et al. (ECCV 2010), as used by Lai et
    al. (ECCV 2018): with ``f̃ = warp(flow_fwd, flow_bwd)``, a pixel is occluded where
    ``|b + f̃|² > 0.01 (|b|² + |f̃|²) + 0.5``; with ``motion_boundaries`` also where
    ``|∇b|² > 0.01 |b|² + 0.002``.
    """
    fwd_at_t = warp(flow_fwd, flow_bwd)

    def sq(v: torch.Tensor) -> torch.Tensor:  # squared norm over the flow channels (B, 1, H, W)
        return v.square().sum(dim=1, keepdim=True)

    bwd_sq = sq(flow_bwd)
    occluded = sq(flow_bwd + fwd_at_t) > 0.01 * (bwd_sq + sq(fwd_at_t)) + 0.5
    if motion_boundaries:
        # |du|² + |dv|², forward differences, zero at the last row/column (as in the reference
        # MATLAB code); summed in place to keep the temporaries few (this runs on every frame).
        grad_sq = torch.zeros_like(bwd_sq)
        grad_sq[..., :, :-1] += sq(flow_bwd[..., :, 1:] - flow_bwd[..., :, :-1])
        grad_sq[..., :-1, :] += sq(flow_bwd[..., 1:, :] - flow_bwd[..., :-1, :])
        occluded |= grad_sq > 0.01 * bwd_sq + 0.002
    return (~occluded).to(flow_bwd.dtype)


def chain_flows(flow_ab: torch.Tensor, flow_bc: torch.Tensor) -> torch.Tensor:
    """Compose backward flows: a -> b (B, 2, H, W) then b -> c gives a -> c (B, 2, H, W).

    With ``a[p] ~ b[p + f_ab(p)]`` and ``b[q] ~ c[q + f_bc(q)]``:
    ``f_ac(p) = f_ab(p) + f_bc(p + f_ab(p)) = f_ab + warp(f_bc, f_ab)``.  Used by D_T's window
    flows and the long-term loss.
    """
    return flow_ab + warp(flow_bc, flow_ab)



def resize_flow(
    flow: torch.Tensor, size: tuple[int, int], valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A flow ``(B, 2, H, W)`` in pixels and its validity ``(B, 1, H, W)`` at ``size = (h, w)``:
    the vectors scaled by ``w / W`` and ``h / H`` (pixels of the new size).

    Growing: bilinear flow, nearest validity.  Shrinking: the flow averaged over each new
    pixel's area, valid only where every pixel it covers is (the ×2 models get their
    low-resolution flow from the training cache's full-size one this way)."""
    h, w = int(size[0]), int(size[1])
    height, width = flow.shape[-2:]
    if (h, w) == (height, width):
        return flow, valid
    shrink = h <= height and w <= width
    resized = F.interpolate(flow, size=(h, w), mode="area") if shrink else F.interpolate(
        flow, size=(h, w), mode="bilinear", align_corners=False)
    resized = resized * torch.tensor([w / width, h / height], device=flow.device, dtype=flow.dtype).view(1, 2, 1, 1)
    if valid is not None:
        valid = -F.adaptive_max_pool2d(-valid, (h, w)) if shrink else F.interpolate(valid, size=(h, w), mode="nearest")
    return resized, valid
