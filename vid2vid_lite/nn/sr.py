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

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .temporal import InitReport, TemporalOutput, init_from_framewise
from .warp import resize_flow, warp


def _lanczos4_taps(shift: float) -> np.ndarray:
    """The 8 Lanczos (a = 4) weights OpenCV's ``INTER_LANCZOS4`` gives a sample ``shift``
    (0 to 1) past a source pixel, for the source pixels -3 to +4 around it, normalised."""
    d = shift + 3 - np.arange(8)
    taps = np.sinc(d) * np.sinc(d / 4)
    return taps / taps.sum()


_TAPS = (_lanczos4_taps(0.75).tolist(), _lanczos4_taps(0.25).tolist())


def _phases(x: torch.Tensor, dim: int) -> list[torch.Tensor]:
    """The two ×2 Lanczos phases along ``dim`` (2: rows, 3: columns) of ``(B, C, H, W)``,
    each of ``x``'s size, borders replicated.

    Output pixel 2i sits at source i − 0.25 (taps over source pixels i − 4 … i + 3), 2i + 1 at
    i + 0.25 (i − 3 … i + 4).  Written as weighted sums of shifted views: a 1×9 convolution
    with one input channel is several times slower on the CPU."""
    n = x.shape[dim]
    padded = F.pad(x, (4, 4, 0, 0) if dim == 3 else (0, 0, 4, 4), mode="replicate")
    phases = []
    for offset, taps in enumerate(_TAPS):  # phase 0: padded pixels i .. i + 7, phase 1: i + 1 .. i + 8
        acc = padded.narrow(dim, offset, n) * taps[0]
        for k, weight in enumerate(taps[1:], start=1):
            acc.add_(padded.narrow(dim, offset + k, n), alpha=weight)
        phases.append(acc)
    return phases


def lanczos_phases(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, 4C, H, W)``: the four ×2 Lanczos phases (row, column) of each
    channel in ``pixel_shuffle``'s order, so ``pixel_shuffle(lanczos_phases(x), 2)`` is
    :func:`lanczos_up2`: a model adds its correction here, at the input's size, and shuffles
    once."""
    b, c, h, w = x.shape
    quads = [q for column in _phases(x, 3) for q in _phases(column, 2)]  # (px, py) order
    return torch.stack([quads[0], quads[2], quads[1], quads[3]], dim=2).reshape(b, 4 * c, h, w)


def lanczos_up2(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C, 2H, 2W)``: OpenCV's ``INTER_LANCZOS4`` ×2 (pixel centres
    aligned, borders replicated), differentiable, on any device."""
    if x.ndim != 4:
        raise ValueError(f"expected (B, C, H, W), got {tuple(x.shape)}")
    return F.pixel_shuffle(lanczos_phases(x), 2)


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


def _check_rgb(in_channels: int) -> None:
    if int(in_channels) != 3:
        raise ValueError(f"the x2 SR networks take RGB (in_channels=3), not {in_channels} channels")


class SRNet(nn.Module):
    """Frame-wise ×2 SR: ``lanczos_up2(x) + pixel_shuffle(body(x))``.

    Args:
        in_channels: must be 3 (RGB).
        channels: width of the body.
        layers: 3×3 convolutions in the body.

    Shape:
        ``(B, 3, H, W)`` in [-1, 1] -> ``(B, 3, 2H, 2W)`` in [-1, 1].
    """

    scale = 2
    multiple = 1  # any size: no padding
    flow_source = "none"
    is_temporal = False

    def __init__(self, in_channels: int = 3, channels: int = 32, layers: int = 7) -> None:
        super().__init__()
        _check_rgb(in_channels)
        self.config = {"name": "sr", "in_channels": 3, "channels": channels, "layers": layers}
        self.body = SRBody(3, 3 * 4, channels, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(lanczos_phases(x) + self.body(x), 2).clamp_(-1, 1)


class TemporalSRNet(nn.Module):
    """Recurrent ×2 SR (FRVSR): the frame, its previous ×2 output warped and folded to the low
    resolution (space-to-depth) and the flow's validity map go through one body, which gives
    the ×2 correction and a ×2 blend mask.

    Args:
        in_channels: must be 3 (RGB).
        channels, layers: the body (as :class:`SRNet`'s, whose weights it can start from).
        mask_bias: initial bias of the mask's logits (sigmoid(2) ≈ 0.88: mostly the new frame).
        use_validity: feed the flow's validity map (without it the body sees ones there, and
            inference needs one DIS call a frame instead of two and the forward-backward test).
        dis_preset: the DIS preset of the flow it is fed (inference and the training cache).

    ``forward(x, y_prev=, flow=, valid=, reset=, mask_power=)``: ``x`` ``(B, 3, H, W)``, the
    previous output ``y_prev`` ``(B, 3, 2H, 2W)``, the backward flow t -> t−1 of the
    low-resolution frames ``(B, 2, H, W)`` in pixels and its validity ``(B, 1, H, W)``;
    ``reset`` ``(B,)`` bool marks rows without a past.  Returns a :class:`TemporalOutput` at
    ×2 (``flow`` and ``valid`` at ×2 too).
    """

    scale = 2
    multiple = 1
    flow_source = "dis"
    is_temporal = True

    def __init__(self, in_channels: int = 3, channels: int = 32, layers: int = 7, mask_bias: float = 2.0,
                 use_validity: bool = True, dis_preset: str = "fast") -> None:
        super().__init__()
        _check_rgb(in_channels)
        self.use_validity = bool(use_validity)
        self.config = {"name": "temporal_sr", "in_channels": 3, "channels": channels, "layers": layers,
                       "mask_bias": mask_bias, "use_validity": self.use_validity, "dis_preset": dis_preset}
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
        flow2, valid2 = resize_flow(flow, big, valid)
        warped = warp(y_prev, flow2)
        resets = bool(reset.any())  # rows without a past get zeros for it (the usual batch has none)
        keep = (~reset).to(x.dtype).view(b, 1, 1, 1)
        if resets:
            valid2, warped, flow2 = valid2 * keep, warped * keep, flow2 * keep
        # the validity folded to the input's size, or (without it) 1 where there is a past
        seen = F.pixel_unshuffle(valid2, 2) if self.use_validity else keep.expand(b, 4, h, w)
        inputs = torch.cat([x, F.pixel_unshuffle(warped, 2), seen], dim=1)
        correction, logits = self.body(inputs).split([12, 4], dim=1)
        image = F.pixel_shuffle(lanczos_phases(x) + correction, 2).clamp_(-1, 1)
        mask = torch.sigmoid(F.pixel_shuffle(logits, 2))
        if mask_power != 1.0:
            mask = mask.pow(mask_power)
        if resets:
            mask = torch.where(keep.bool().expand_as(mask), mask, torch.ones_like(mask))
        out = torch.lerp(warped, image.to(warped.dtype), mask.to(warped.dtype))  # m·image + (1 − m)·warped
        return TemporalOutput(out=out, image=image, mask=mask, warped=warped, flow=flow2, valid=valid2)

    def init_from_framewise(self, framewise: SRNet | dict) -> InitReport:
        """Start from a trained :class:`SRNet` (:func:`~vid2vid_lite.nn.temporal.init_from_framewise`):
        its body's weights, with the extra inputs (the warped past, the validity) and the
        mask's outputs starting at zero, so the correction is the frame-wise one until training
        says otherwise."""
        return init_from_framewise(self, framewise)


def sr_param_count(model: nn.Module) -> int:
    """Trainable parameters (the bundled models' size budget)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

