"""The one warp and the one occlusion test used by models, losses and metrics.

Flow convention: ``flow`` has shape ``(B, 2, H, W)``, channels ``(dx, dy)`` in pixels.  It is a
*backward* flow from the frame we want to predict (t) to the frame we sample from (t-1):
pixel ``p`` of frame t is found at ``p + flow[p]`` in frame t-1.  So
``warp(y[t-1], flow[t->t-1])`` is y[t-1] aligned to frame t.
"""

from __future__ import annotations

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


def warp(image: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Backward-warp ``image`` (B, C, H, W) by ``flow`` (B, 2, H, W) in pixels.

    ``out[p] = image[p + flow[p]]``, sampled with ``grid_sample(align_corners=True,
    padding_mode="border")``.  With ``align_corners=True`` pixel ``x`` maps to
    ``2x / (W - 1) - 1``, so zero flow is the identity (the pitfall vid2vid fell into).
    Differentiable in both ``image`` and ``flow``.
    """
    _check_flow(image, flow)
    _, _, h, w = image.shape
    coords = pixel_grid(h, w, device=flow.device, dtype=flow.dtype) + flow
    # Normalise to [-1, 1] for align_corners=True; max(…, 1) keeps 1-pixel sizes finite.
    gx = coords[:, 0] * (2.0 / max(w - 1, 1)) - 1.0
    gy = coords[:, 1] * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack((gx, gy), dim=-1).to(image.dtype)
    return F.grid_sample(image, grid, mode=mode, padding_mode="border", align_corners=True)


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

    def sq(v: torch.Tensor) -> torch.Tensor:  # squared norm over the 2 flow channels
        return v[:, 0:1].square() + v[:, 1:2].square()

    occluded = sq(flow_bwd + fwd_at_t) > 0.01 * (sq(flow_bwd) + sq(fwd_at_t)) + 0.5
    if motion_boundaries:
        # Forward differences, zero at the last row/column (as in the reference MATLAB code).
        du = F.pad(flow_bwd[..., :, 1:] - flow_bwd[..., :, :-1], (0, 1, 0, 0))
        dv = F.pad(flow_bwd[..., 1:, :] - flow_bwd[..., :-1, :], (0, 0, 0, 1))
        occluded |= sq(du) + sq(dv) > 0.01 * sq(flow_bwd) + 0.002
    return (~occluded).to(flow_bwd.dtype)
