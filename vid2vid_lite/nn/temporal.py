"""The recurrent, flow-warped temporal generator (vid2vid / TecoGAN line).

At time t the generator sees the source frame x[t] (optionally x[t-1]), its own previous output
y[t-1] warped to t with the backward flow t -> t-1, that flow and a validity (non-occlusion)
map.  A U-Net body predicts an image h[t] and, as a fourth output channel of its last layer, a
blend mask m[t] in [0, 1]::

    warped = warp(y[t-1], flow[t -> t-1])
    y[t]   = m * h + (1 - m) * warped

At the first frame of a shot (or after a cut) there is no previous output: the same network
runs with zeros for the previous frame, the warped output, the flow and the validity, and m is
forced to 1.  This is per batch element (``reset``), so a batch can mix shots.

Flow sources (``flow=``): ``dis`` (flow and validity computed outside, e.g. by
:class:`~vid2vid_lite.flow.DISFlow` on CPU workers, and passed in), ``learned``
(:class:`~vid2vid_lite.nn.flow.LearnedFlow` inside the model) or ``raft``
(:class:`~vid2vid_lite.nn.flow.RAFTFlow`, local weights only).  A flow passed to ``forward``
always wins, whatever the source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .flow import LearnedFlow, RAFTFlow
from .unet import PAD_MODES, UNet, crop_pad, init_weights, pad_to_multiple, rgb_of, to_image
from .warp import warp

FLOW_SOURCES = ("dis", "learned", "raft")


def low_pass(x: torch.Tensor, sigma: float, size: tuple[int, int] | None = None) -> torch.Tensor:
    """A smooth low-pass of ``x`` (B, C, H, W) keeping structures larger than about ``2·sigma``
    pixels: box averages over ``round(2·sigma)``-pixel cells, interpolated bilinearly to ``size``
    (default: ``x``'s own; a full-resolution Gaussian blur cost 13-50 ms a 640x360 frame on the
    CPU, this ~4 ms)."""
    size = tuple(size or x.shape[-2:])
    cell = max(1, round(2 * sigma))
    small = F.avg_pool2d(x, cell, ceil_mode=True) if cell > 1 else x
    if tuple(small.shape[-2:]) == size:
        return small
    return F.interpolate(small, size=size, mode="bilinear", align_corners=False)


class TemporalOutput(NamedTuple):
    """What :class:`TemporalGenerator` returns; all (B, ., H, W) but ``image`` and ``mask``.

    out: the blended frame y[t] (B, 3, H, W) in [-1, 1]; feed it back as ``y_prev``.
    image: the newly generated image h[t] (B, 3, H', W'), at the body's size (``body_scale``).
    mask: the blend mask m[t] (B, 1, H', W') in [0, 1]; 1 = take h, 0 = copy the warped past.
    warped: y[t-1] warped to t (B, 3, H, W); zeros at a reset.
    flow: the backward flow t -> t-1 used (B, 2, H, W) in pixels; zeros at a reset.
    valid: the validity map used (B, 1, H, W); zeros at a reset.
    """

    out: torch.Tensor
    image: torch.Tensor
    mask: torch.Tensor
    warped: torch.Tensor
    flow: torch.Tensor
    valid: torch.Tensor


@dataclass
class InitReport:
    """What :meth:`TemporalGenerator.init_from_framewise` copied (parameter/buffer names)."""

    copied: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"copied {len(self.copied)}, partially copied {len(self.partial)}, "
            f"skipped {len(self.skipped)}"
        )


class TemporalGenerator(nn.Module):
    """Recurrent generator: ``forward(x, x_prev, y_prev, flow, valid, reset) -> TemporalOutput``.

    The body is the pix2pix :class:`~vid2vid_lite.nn.unet.UNet` with the same names as the
    frame-wise :class:`~vid2vid_lite.nn.unet.UNetGenerator` (``body.*``), so a trained frame-wise
    model can initialise it (:meth:`init_from_framewise`).  Its input is the channel
    concatenation, in this order, of::

        x[t] (C_in) | x[t-1] (C_in, if use_prev_input) | warped y[t-1] (3)
            | flow / flow_norm (2) | valid (1, if use_validity)

    The mask head is ``ReLU -> 4x4 stride-2 transposed conv`` on the decoder's last feature map.
    Its bias starts at ``mask_bias`` (2.0: m ~ 0.88), so the untrained model mostly generates;
    copying has to be learned where it pays (see the copy-collapse pitfall in docs/DESIGN.md).

    Args:
        in_channels, out_channels, ngf, depth, norm, residual, pad_mode, full_res: as
            :class:`~vid2vid_lite.nn.unet.UNetGenerator` (``residual`` adds to x[t]).
        flow: flow source, ``dis``, ``learned`` or ``raft``.
        use_prev_input: also feed the previous source frame x[t-1].
        use_validity: also feed the validity map.  Without it the network has to judge the
            warped past from the frames themselves, and inference needs one DIS call a frame
            instead of two (no forward-backward test); training still masks its warp loss
            and mask regulariser with the validity.
        flow_norm: the flow is fed to the body divided by this (pixels), so that typical motions
            are O(1).
        mask_bias: initial bias of the mask logit.
        detail_sigma: > 0 (residual models): the output keeps x[t]'s own detail and changes only
            the low frequencies (:func:`low_pass`, structures above ~2·sigma pixels) of the
            blended result's difference to it: ``x + low_pass(out - x)``.  For ``deflicker``,
            whose flicker is mostly tone and colour: copying the warped past then cannot blur
            the picture (repeated bilinear warps lose detail).
        body_scale: with ``detail_sigma`` > 0, run the body (and the blend) at 1/``body_scale``
            of the frame's size, on box-averaged inputs: the low-pass throws the finer output
            away anyway, and the body costs ``body_scale``² times less.  ``image`` and ``mask``
            are returned at the body's size (``ceil(H / body_scale)``): inference reads only
            ``out``, so upsampling them would be wasted work.
        blend_full_res: with ``detail_sigma`` > 0, blend at the frame's size:
            ``m · (x + low_pass(h - x)) + (1 - m) · warped``, the mask upsampled.  Only the new
            frame's correction is low-passed, so where the mask copies the past its detail comes
            too, and flicker finer than the low-pass (a stylization filter's edges and texture)
            can be held still.  Without it the blended result's difference to x is low-passed
            as a whole, and x's fine detail passes through unchanged.
        dis_preset: DIS preset the flow is computed with (``flow=dis``); stored for the engine.
        flow_width, flow_levels: :class:`~vid2vid_lite.nn.flow.LearnedFlow` size (``flow=learned``).
        raft_weights, raft_variant, raft_iters: :class:`~vid2vid_lite.nn.flow.RAFTFlow` settings
            (``flow=raft``; a local weights file is required).

    Attributes:
        flow_source: ``dis``, ``learned`` or ``raft``; with ``dis`` the caller must pass ``flow``.
        multiple: the pad multiple of the body (``2**depth``).
    """

    is_temporal = True

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        depth: int = 7,
        norm: str = "instance",
        residual: bool = False,
        pad_mode: str = "reflect",
        full_res: int = 0,
        flow: str = "dis",
        use_prev_input: bool = False,
        use_validity: bool = True,
        flow_norm: float = 20.0,
        mask_bias: float = 2.0,
        detail_sigma: float = 0.0,
        body_scale: int = 1,
        blend_full_res: bool = False,
        dis_preset: str = "fast",
        flow_width: int = 32,
        flow_levels: int = 3,
        raft_weights: str | None = None,
        raft_variant: str = "small",
        raft_iters: int = 12,
    ) -> None:
        super().__init__()
        if flow not in FLOW_SOURCES:
            raise ValueError(f"unknown flow source {flow!r}; choose one of {FLOW_SOURCES}")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"unknown pad mode {pad_mode!r}; choose one of {PAD_MODES}")
        if out_channels != 3:
            raise ValueError("the temporal generator blends RGB frames: out_channels must be 3")
        if flow_norm <= 0:
            raise ValueError(f"flow_norm must be positive, got {flow_norm}")
        self.config = {
            "name": "temporal",
            "in_channels": in_channels,
            "out_channels": out_channels,
            "ngf": ngf,
            "depth": depth,
            "norm": norm,
            "residual": residual,
            "pad_mode": pad_mode,
            "full_res": int(full_res),
            "flow": flow,
            "use_prev_input": use_prev_input,
            "use_validity": use_validity,
            "flow_norm": flow_norm,
            "mask_bias": mask_bias,
            "detail_sigma": float(detail_sigma),
            "body_scale": int(body_scale),
            "blend_full_res": bool(blend_full_res),
            "dis_preset": dis_preset,
            "flow_width": flow_width,
            "flow_levels": flow_levels,
            "raft_weights": None if raft_weights is None else str(raft_weights),
            "raft_variant": raft_variant,
            "raft_iters": raft_iters,
        }
        self.in_channels = in_channels
        self.flow_source = flow
        self.use_prev_input = use_prev_input
        self.use_validity = use_validity
        self.residual = residual
        self.pad_mode = pad_mode
        self.flow_norm = float(flow_norm)
        if detail_sigma < 0 or (detail_sigma > 0 and not residual):
            raise ValueError("detail_sigma needs a residual model and must be >= 0")
        self.detail_sigma = float(detail_sigma)
        if body_scale < 1 or (body_scale > 1 and detail_sigma <= 0):
            raise ValueError("body_scale must be >= 1, and > 1 only with detail_sigma > 0 (its low-pass)")
        self.body_scale = int(body_scale)
        if blend_full_res and detail_sigma <= 0:
            raise ValueError("blend_full_res needs detail_sigma > 0 (without it the blend is at full size anyway)")
        self.blend_full_res = bool(blend_full_res)
        body_in = in_channels * (2 if use_prev_input else 1) + out_channels + 2 + int(use_validity)
        # The mask is one more output channel of the last layer rather than a head of its own:
        # a separate full-resolution transposed conv cost ~7 ms a 640x360 frame on 2 CPU cores.
        self.body = UNet(body_in, out_channels + 1, ngf, depth, norm, int(full_res))
        self.multiple = self.body.multiple
        init_weights(self)
        last = self.body.last
        nn.init.constant_(last.bias[out_channels:], mask_bias)
        if residual:  # start as the identity on x[t], like the frame-wise residual model
            nn.init.zeros_(last.weight[:, :out_channels])
            nn.init.zeros_(last.bias[:out_channels])
        # Built after init_weights so that their own initialisation / loaded weights stay.
        self.flow_net: nn.Module | None = None
        if flow == "learned":
            self.flow_net = LearnedFlow(in_channels, flow_width, flow_levels)
        elif flow == "raft":
            if in_channels != 3:
                raise ValueError("flow=raft needs RGB sources (in_channels=3)")
            self.flow_net = RAFTFlow(raft_weights, raft_variant, raft_iters)

    def estimate_flow(
        self, x: torch.Tensor, x_prev: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Backward flow t -> t-1 (B, 2, H, W) and validity (B, 1, H, W) from ``flow_net``."""
        if self.flow_net is None:
            raise ValueError(
                "flow=dis: pass flow (and valid) to forward, e.g. from "
                "DISFlow.backward_with_validity"
            )
        return self.flow_net(x, x_prev)

    def _reset_flags(
        self, reset: torch.Tensor | None, y_prev: torch.Tensor | None, batch: int, device
    ) -> torch.Tensor:
        if y_prev is None:
            if reset is not None and not bool(torch.as_tensor(reset).all()):
                raise ValueError(
                    "y_prev is None but reset says some batch elements continue a shot"
                )
            return torch.ones(batch, dtype=torch.bool, device=device)
        if reset is None:
            return torch.zeros(batch, dtype=torch.bool, device=device)
        reset = torch.as_tensor(reset, device=device).reshape(-1).bool()
        if reset.numel() != batch:
            raise ValueError(
                f"reset must have one flag per batch element ({batch}), got {reset.numel()}"
            )
        return reset

    def forward(
        self,
        x: torch.Tensor,
        x_prev: torch.Tensor | None = None,
        y_prev: torch.Tensor | None = None,
        flow: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
        reset: torch.Tensor | None = None,
        mask_power: float = 1.0,
    ) -> TemporalOutput:
        """One recurrent step.

        Args:
            x: source frame x[t] (B, C_in, H, W) in [-1, 1]; any H, W.
            x_prev: source frame x[t-1] (B, C_in, H, W); needed by ``use_prev_input`` and by the
                learned / RAFT flow unless ``flow`` is given.
            y_prev: previous output y[t-1] (B, 3, H, W) in [-1, 1], or None at the first frame.
            flow: backward flow t -> t-1 (B, 2, H, W) in pixels; required with ``flow=dis``.
            valid: validity (B, 1, H, W) in [0, 1] for ``flow``; ones if omitted.
            reset: bool (B,), True where a new shot starts; None means all True when ``y_prev``
                is None and all False otherwise.
            mask_power: an inference dial (``run``'s ``stability=``): the blend mask becomes
                m ** ``mask_power``.  Above 1 more of the warped past is kept (steadier, further
                from h); below 1 less; 1 is the mask as trained.  m = 1 (a reset, a region the
                model takes as new) stays 1, so it never holds a past that is not there.

        Returns:
            :class:`TemporalOutput`.
        """
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected x (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        b, _, h, w = x.shape
        for name, t, c in (("x_prev", x_prev, self.in_channels), ("y_prev", y_prev, 3)):
            if t is not None and tuple(t.shape) != (b, c, h, w):
                raise ValueError(f"expected {name} of shape {(b, c, h, w)}, got {tuple(t.shape)}")
        reset = self._reset_flags(reset, y_prev, b, x.device)
        cont = (~reset).view(b, 1, 1, 1)  # True where the element continues its shot
        keep = cont.to(x.dtype)
        some_reset = bool(reset.any())  # else the masking below is the identity: skipped

        if bool(reset.all()):
            flow = x.new_zeros(b, 2, h, w)
            valid = x.new_zeros(b, 1, h, w)
            warped = x.new_zeros(b, 3, h, w)
        else:
            if flow is None:
                if x_prev is None:
                    raise ValueError(f"flow={self.flow_source} without a given flow needs x_prev")
                flow, valid = self.estimate_flow(x, x_prev)
            if tuple(flow.shape) != (b, 2, h, w):
                raise ValueError(f"expected flow of shape {(b, 2, h, w)}, got {tuple(flow.shape)}")
            if valid is None:
                valid = torch.ones_like(flow[:, :1])
            elif tuple(valid.shape) != (b, 1, h, w):
                raise ValueError(
                    f"expected valid of shape {(b, 1, h, w)}, got {tuple(valid.shape)}"
                )
            warped = warp(y_prev, flow)
            if some_reset:
                # Zero what a reset element must not see (its "previous" frame is another shot);
                # torch.where rather than a product so that garbage (even NaN) cannot leak.
                flow = torch.where(cont, flow, 0.0)
                valid = torch.where(cont, valid, 0.0)
                warped = torch.where(cont, warped, 0.0)

        inputs = [x]
        if self.use_prev_input:
            if x_prev is None:
                inputs.append(x.new_zeros(x.shape))
            else:
                inputs.append(torch.where(cont, x_prev, 0.0) if some_reset else x_prev)
        scale = self.body_scale
        flow_in = flow / (self.flow_norm * scale)  # in pixels of the body's resolution
        inputs += [warped, flow_in, valid] if self.use_validity else [warped, flow_in]
        body_in = torch.cat(inputs, dim=1)
        if scale > 1:
            body_in = F.avg_pool2d(body_in, scale, ceil_mode=True)
        # x[t] and the warped past at the body's resolution: the first channels and the 3 after
        # x[t] (and x[t-1]) of its input
        x_body = body_in[:, : self.in_channels]
        first_warped = self.in_channels * (2 if self.use_prev_input else 1)
        warped_body = body_in[:, first_warped : first_warped + 3]
        padded, pads = pad_to_multiple(body_in, self.multiple, self.pad_mode)
        logits = crop_pad(self.body(padded), pads)
        image = to_image(logits[:, :3], x_body, self.residual)
        mask = torch.sigmoid(logits[:, 3:])
        if mask_power != 1.0:
            mask = mask.pow(mask_power)
        if some_reset:
            # m = 1 at a reset; a blend (not torch.where) so that the head stays in the graph.
            mask = mask * keep + (1.0 - keep)
        # not torch.lerp below: it refuses mixed dtypes (autocast)
        sigma = self.detail_sigma / scale  # the low-pass in the body's pixels
        if self.detail_sigma <= 0:
            out = mask * image + (1.0 - mask) * warped_body
        elif self.blend_full_res:
            fresh = rgb_of(x) + low_pass(image - rgb_of(x_body), sigma, size=(h, w))
            m = low_pass(mask, sigma, size=(h, w))
            out = m * fresh + (1.0 - m) * warped
        else:
            blended = mask * image + (1.0 - mask) * warped_body
            out = rgb_of(x) + low_pass(blended - rgb_of(x_body), sigma, size=(h, w))
        return TemporalOutput(out, image, mask, warped, flow, valid)

    @torch.no_grad()
    def init_from_framewise(self, source: nn.Module | Mapping[str, torch.Tensor]) -> InitReport:
        """Start from a frame-wise generator (:func:`init_from_framewise`): the image branch
        computes exactly the frame-wise output until training uses the new inputs."""
        return init_from_framewise(self, source)


@torch.no_grad()
def init_from_framewise(model: nn.Module, source: nn.Module | Mapping[str, torch.Tensor]) -> InitReport:
    """Copy a frame-wise generator's weights into a temporal ``model`` wherever the name and
    shape match.

    The first convolution differs only in its input channels: x[t] comes first in the body's
    input, so its weights are copied into the x[t] slice and the extra input channels
    (previous frame, warped output, flow, validity) are zeroed.  The last layer has extra
    outputs (the mask): the frame-wise part is copied, the mask's weights zeroed and its
    initial bias kept.

    Args:
        model: the temporal generator (its layers named as the frame-wise one's).
        source: the frame-wise generator or its ``state_dict()``.

    Returns:
        an :class:`InitReport` (its ``str`` gives the counts).
    """
    src = source.state_dict() if isinstance(source, nn.Module) else source
    report = InitReport()
    for name, dst in model.state_dict().items():
        tensor = src.get(name)
        if tensor is None:
            report.skipped.append(name)
        elif tensor.shape == dst.shape:
            dst.copy_(tensor)
            report.copied.append(name)
        elif _leading_slice(tensor, dst) is not None:
            # The first conv has extra input channels, the last layer an extra output (the
            # mask): copy the frame-wise part; zero the new weights so the image branch
            # starts as the frame-wise model; keep the mask's initial bias.
            dim = _leading_slice(tensor, dst)
            if dst.dim() > 1:
                dst.zero_()
            dst.narrow(dim, 0, tensor.shape[dim]).copy_(tensor)
            report.partial.append(name)
        else:
            report.skipped.append(name)
    return report


def _leading_slice(src: torch.Tensor, dst: torch.Tensor) -> int | None:
    """The one dimension along which ``src`` is a shorter version of ``dst``, else None."""
    if src.dim() != dst.dim():
        return None
    differing = [d for d in range(src.dim()) if src.shape[d] != dst.shape[d]]
    if len(differing) == 1 and src.shape[differing[0]] < dst.shape[differing[0]]:
        return differing[0]
    return None
