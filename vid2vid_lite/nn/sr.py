"""×2 super-resolution networks shaped for the CPU: they compute at the input's resolution.

:class:`SRNet` (frame-wise, the ESPCN shape): a body of 3×3 convolutions at the low
resolution ends in a sub-pixel (pixel-shuffle) ×2 correction, added to a Lanczos ×2 of the
input (:func:`lanczos_up2`).  The last convolution starts at zero, so an untrained net is
exactly Lanczos, and the cost grows with the input's pixels, not the output's.

:class:`TemporalSRNet` (the FRVSR shape, Sajjadi et al., CVPR 2018) also takes its previous ×2
output, warped to the current frame by the low-resolution flow scaled ×2 and brought back to
the low resolution by space-to-depth (12 channels), with the flow's validity map.  The same
body predicts the ×2 correction and a blend mask m at ×2: ``out = m·h + (1 − m)·warped`` with
``h = lanczos + correction``; ``m = 1`` where a row resets (no past).  It shares the frame-wise
body's layers (:meth:`TemporalSRNet.init_from_framewise`), so it starts from the frame-wise
weights.

Both take and return images in [-1, 1].
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .temporal import TemporalOutput
from .warp import warp


def _lanczos4_taps(shift: float) -> np.ndarray:
    """The 8 Lanczos (a = 4) weights OpenCV's ``INTER_LANCZOS4`` gives a sample ``shift``
    (0 to 1) past a source pixel, for the source pixels -3 to +4 around it, normalised."""
    d = shift + 3 - np.arange(8)
    taps = np.sinc(d) * np.sinc(d / 4)
    return taps / taps.sum()


def _phase_kernels() -> torch.Tensor:
    """``(2, 1, 9)``: the weights of output pixels 2i (source i − 0.25) and 2i + 1 (source
    i + 0.25) over source pixels i − 4 to i + 4."""
    kernels = np.zeros((2, 1, 9))
    kernels[0, 0, 0:8] = _lanczos4_taps(0.75)  # source i - 0.25 = (i - 1) + 0.75
    kernels[1, 0, 1:9] = _lanczos4_taps(0.25)
    return torch.from_numpy(kernels).float()


_KERNELS = _phase_kernels()


def _up2_last_axis(x: torch.Tensor) -> torch.Tensor:
    """Lanczos ×2 along the last axis of ``(N, 1, H, W)``, borders replicated."""
    n, _, h, w = x.shape
    k = _KERNELS.to(x.device, x.dtype).view(2, 1, 1, 9)
    y = F.conv2d(F.pad(x, (4, 4, 0, 0), mode="replicate"), k)  # (N, 2, H, W): the two phases
    return y.permute(0, 2, 3, 1).reshape(n, 1, h, 2 * w)


def lanczos_up2(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C, 2H, 2W)``: OpenCV's ``INTER_LANCZOS4`` ×2 (pixel centres
    aligned, borders replicated), as a fixed convolution (differentiable, on any device)."""
    if x.ndim != 4:
        raise ValueError(f"expected (B, C, H, W), got {tuple(x.shape)}")
    b, c, h, w = x.shape
    y = _up2_last_axis(x.reshape(b * c, 1, h, w))
    y = _up2_last_axis(y.transpose(2, 3)).transpose(2, 3)
    return y.reshape(b, c, 2 * h, 2 * w)


class SRBody(nn.Module):
    """``layers`` 3×3 convolutions of ``channels`` (LeakyReLU between) from ``in_channels`` to
    ``out_channels``; the last one starts at zero (no correction)."""

    def __init__(self, in_channels: int, out_channels: int, channels: int = 32, layers: int = 7) -> None:
        super().__init__()
        if layers < 2:
            raise ValueError(f"an SR body needs at least 2 layers, got {layers}")
        widths = [in_channels] + [channels] * (layers - 1) + [out_channels]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths, widths[1:]))
        nn.init.zeros_(self.convs[-1].weight)
        nn.init.zeros_(self.convs[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs[:-1]:
            x = F.leaky_relu(conv(x), 0.1)
        return self.convs[-1](x)


class SRNet(nn.Module):
    """Frame-wise ×2 SR: ``lanczos_up2(x) + pixel_shuffle(body(x))``.

    Args:
        channels: width of the body.
        layers: 3×3 convolutions in the body.

    Shape:
        ``(B, 3, H, W)`` in [-1, 1] -> ``(B, 3, 2H, 2W)`` in [-1, 1].
    """

    scale = 2
    flow_source = "none"

    def __init__(self, channels: int = 32, layers: int = 7) -> None:
        super().__init__()
        self.config = {"name": "sr", "channels": channels, "layers": layers}
        self.body = SRBody(3, 3 * 4, channels, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (lanczos_up2(x) + F.pixel_shuffle(self.body(x), 2)).clamp(-1, 1)


class TemporalSRNet(nn.Module):
    """Recurrent ×2 SR (FRVSR): the frame, its previous ×2 output warped and folded to the low
    resolution (space-to-depth) and the flow's validity map go through one body, which gives
    the ×2 correction and a ×2 blend mask.

    Args:
        channels, layers: the body (as :class:`SRNet`'s, whose weights it can start from).
        mask_bias: initial bias of the mask's logits (sigmoid(2) ≈ 0.88: mostly the new frame).

    ``forward(x, y_prev=, flow=, valid=, reset=, mask_power=)``: ``x`` ``(B, 3, H, W)``, the
    previous output ``y_prev`` ``(B, 3, 2H, 2W)``, the backward flow t -> t−1 of the
    low-resolution frames ``(B, 2, H, W)`` in pixels and its validity ``(B, 1, H, W)``;
    ``reset`` ``(B,)`` bool marks rows without a past.  Returns a :class:`TemporalOutput` at
    ×2 (``flow`` and ``valid`` at ×2 too).
    """

    scale = 2
    flow_source = "dis"
    use_validity = True

    def __init__(self, channels: int = 32, layers: int = 7, mask_bias: float = 2.0) -> None:
        super().__init__()
        self.config = {"name": "temporal_sr", "channels": channels, "layers": layers, "mask_bias": mask_bias}
        # in: frame 3 + warped past folded 12 + validity folded 4; out: correction 12 + mask 4
        self.body = SRBody(3 + 12 + 4, 12 + 4, channels, layers)
        with torch.no_grad():
            self.body.convs[-1].bias[12:] = mask_bias

    def forward(
        self,
        x: torch.Tensor,
        y_prev: torch.Tensor | None = None,
        flow: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
        reset: torch.Tensor | None = None,
        mask_power: float = 1.0,
        **_,
    ) -> TemporalOutput:
        b, _, h, w = x.shape
        big = (2 * h, 2 * w)
        if y_prev is None or flow is None:
            reset = torch.ones(b, dtype=torch.bool, device=x.device)
            y_prev, flow = x.new_zeros(b, 3, *big), x.new_zeros(b, 2, h, w)
        if reset is None:
            reset = torch.zeros(b, dtype=torch.bool, device=x.device)
        valid = torch.ones_like(flow[:, :1]) if valid is None else valid
        keep = (~reset).to(x.dtype).view(b, 1, 1, 1)
        flow2 = F.interpolate(flow, size=big, mode="bilinear", align_corners=False) * 2  # pixels at ×2
        valid2 = F.interpolate(valid, size=big, mode="nearest") * keep
        warped = warp(y_prev, flow2) * keep
        inputs = torch.cat([x, F.pixel_unshuffle(warped, 2), F.pixel_unshuffle(valid2, 2)], dim=1)
        correction, logits = self.body(inputs).split([12, 4], dim=1)
        image = (lanczos_up2(x) + F.pixel_shuffle(correction, 2)).clamp(-1, 1)
        mask = torch.sigmoid(F.pixel_shuffle(logits, 2))
        if mask_power != 1.0:
            mask = mask.pow(mask_power)
        mask = torch.where(keep.bool().expand_as(mask), mask, torch.ones_like(mask))
        out = mask * image + (1 - mask) * warped
        return TemporalOutput(out=out, image=image, mask=mask, warped=warped, flow=flow2 * keep, valid=valid2)

    @torch.no_grad()
    def init_from_framewise(self, framewise: SRNet) -> None:
        """Start from a trained :class:`SRNet`: its body's weights, with the extra inputs
        (the warped past, the validity) and the mask's outputs starting at zero, so the
        correction is the frame-wise one until training says otherwise."""
        for mine, theirs in zip(self.body.convs, framewise.body.convs):
            if mine.weight.shape == theirs.weight.shape:
                mine.weight.copy_(theirs.weight)
                mine.bias.copy_(theirs.bias)
        first, last = self.body.convs[0], self.body.convs[-1]
        first.weight.zero_()
        first.weight[:, :3].copy_(framewise.body.convs[0].weight)
        first.bias.copy_(framewise.body.convs[0].bias)
        last.weight[:12].copy_(framewise.body.convs[-1].weight)
        last.bias[:12].copy_(framewise.body.convs[-1].bias)
        last.weight[12:].zero_()


def sr_param_count(model: nn.Module) -> int:
    """Trainable parameters (the bundled models' size budget)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


assert math.isclose(float(_KERNELS[0].sum()), 1.0, rel_tol=1e-6)
