"""The temporal discriminator D_T: judges K consecutive frames together (vid2vid).

For a window of K frames around a centre frame c, D_T sees, concatenated along channels:

- the K frames (real or generated), (B, K*3, H, W);
- the K matching source frames, (B, K*C_in, H, W);
- the K-1 neighbours warped to the centre frame with the given flows, (B, (K-1)*3, H, W).

If the frames are temporally consistent, the warped neighbours agree with the centre frame
wherever the flow is valid; flicker and misalignment make them disagree, which a 2D PatchGAN on
the stacked channels spots easily.  (A 2D conv over stacked frames is much cheaper than a 3D
conv and enough for K = 3.)  Several temporal strides (e.g. 1 and 3) each get their own
PatchGAN: stride s looks at frames c - s, c, c + s, catching slow drift that stride 1 misses.

Outputs follow :mod:`~vid2vid_lite.nn.patchgan`: :class:`TemporalPatchDiscriminator` returns
``list[Tensor]`` (block features, last = patch logits); :class:`TemporalDiscriminator` returns
``list[list[Tensor]]``, one list per stride.  No BatchNorm, no dropout (see patchgan.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from .patchgan import NLayerDiscriminator
from .warp import chain_flows, warp


def window_offsets(num_frames: int, stride: int) -> list[int]:
    """Frame offsets of a K-frame window around its centre (index K // 2), e.g. [-3, 0, 3]."""
    return [(k - num_frames // 2) * stride for k in range(num_frames)]


def centre_flows(
    flow_bwd: torch.Tensor, flow_fwd: torch.Tensor | None, centre: int, offsets: Sequence[int]
) -> torch.Tensor:
    """Flows from the centre frame to each frame of a window, chained from adjacent flows.

    Args:
        flow_bwd: (B, T, 2, H, W), ``flow_bwd[:, t]`` = flow t -> t-1 (index 0 unused).
        flow_fwd: (B, T, 2, H, W), ``flow_fwd[:, t]`` = flow t -> t+1 (last index unused); only
            needed for positive offsets.
        centre: index of the centre frame.
        offsets: frame offsets from the centre, e.g. ``window_offsets(3, 1)``.

    Returns:
        (B, K, 2, H, W), zeros at offset 0.
    """
    t_len = flow_bwd.shape[1]
    if min(offsets) + centre < 0 or max(offsets) + centre >= t_len:
        raise ValueError(f"window {[centre + o for o in offsets]} does not fit in {t_len} frames")
    if max(offsets) > 0 and flow_fwd is None:
        raise ValueError("a window with frames after the centre needs flow_fwd (flow t -> t+1)")
    flows = []
    for offset in offsets:
        if offset == 0:
            flows.append(torch.zeros_like(flow_bwd[:, centre]))
            continue
        step, adjacent = (-1, flow_bwd) if offset < 0 else (1, flow_fwd)
        flow = adjacent[:, centre]
        for t in range(centre + step, centre + offset, step):
            flow = chain_flows(flow, adjacent[:, t])
        flows.append(flow)
    return torch.stack(flows, dim=1)


class TemporalPatchDiscriminator(nn.Module):
    """One D_T for one stride: a PatchGAN on K frames, their sources and the warped neighbours.

    Args:
        in_channels: channels of a source frame.
        out_channels: channels of a frame (3).
        num_frames: K (>= 2); the centre is index K // 2.
        ndf, n_layers, norm: as :class:`~vid2vid_lite.nn.patchgan.NLayerDiscriminator`.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_frames: int = 3,
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        if num_frames < 2:
            raise ValueError(f"a temporal discriminator needs num_frames >= 2, got {num_frames}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_frames = num_frames
        channels = num_frames * (out_channels + in_channels) + (num_frames - 1) * out_channels
        self.net = NLayerDiscriminator(channels, ndf, n_layers, norm)

    def forward(
        self, frames: torch.Tensor, sources: torch.Tensor, flows: torch.Tensor
    ) -> list[torch.Tensor]:
        """Judge one window.

        Args:
            frames: (B, K, 3, H, W) real or generated frames in [-1, 1].
            sources: (B, K, C_in, H, W) the matching source frames.
            flows: (B, K, 2, H, W) backward flows from the centre frame to each frame, in pixels
                (see :func:`centre_flows`); the centre entry is ignored.

        Returns:
            the PatchGAN features, the last being the patch logits (B, 1, h, w).
        """
        b, k = frames.shape[:2]
        size = frames.shape[-2:]
        expected = {
            "frames": (frames, self.out_channels),
            "sources": (sources, self.in_channels),
            "flows": (flows, 2),
        }
        for name, (t, c) in expected.items():
            if (
                t.dim() != 5
                or tuple(t.shape[:3]) != (b, self.num_frames, c)
                or t.shape[-2:] != size
            ):
                raise ValueError(
                    f"expected {name} of shape (B, {self.num_frames}, {c}, H, W) matching frames "
                    f"{tuple(frames.shape)}, got {tuple(t.shape)}"
                )
        centre = k // 2
        warped = [warp(frames[:, i], flows[:, i]) for i in range(k) if i != centre]
        x = torch.cat([frames.flatten(1, 2), sources.flatten(1, 2), *warped], dim=1)
        return self.net(x)


class TemporalDiscriminator(nn.Module):
    """D_T at one or more temporal strides, each with its own :class:`TemporalPatchDiscriminator`.

    Args:
        in_channels: channels of a source frame.
        out_channels: channels of a frame (3).
        num_frames: K, frames per window (default 3).
        strides: temporal strides, e.g. ``(1,)`` or ``(1, 3)``; a clip needs
            ``(K - 1) * max(strides) + 1`` frames (:attr:`required_frames`).
        ndf, n_layers, norm: as :class:`~vid2vid_lite.nn.patchgan.NLayerDiscriminator`.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_frames: int = 3,
        strides: Sequence[int] = (1,),
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        strides = tuple(int(s) for s in strides)
        if not strides or min(strides) < 1:
            raise ValueError(f"strides must be a non-empty list of positive ints, got {strides}")
        self.num_frames = num_frames
        self.strides = strides
        self.required_frames = (num_frames - 1) * max(strides) + 1
        self.discriminators = nn.ModuleList(
            [
                TemporalPatchDiscriminator(
                    in_channels, out_channels, num_frames, ndf, n_layers, norm
                )
                for _ in strides
            ]
        )

    def forward(
        self,
        frames: torch.Tensor,
        sources: torch.Tensor,
        flow_bwd: torch.Tensor,
        flow_fwd: torch.Tensor | None = None,
        centre: int | None = None,
    ) -> list[list[torch.Tensor]]:
        """Judge the windows around ``centre`` of a clip, one per stride.

        Args:
            frames: (B, T, 3, H, W) real or generated clip.
            sources: (B, T, C_in, H, W) source clip.
            flow_bwd: (B, T, 2, H, W), ``[:, t]`` = flow t -> t-1 of the *source or real* clip
                (use the same flows for real and generated clips).
            flow_fwd: (B, T, 2, H, W), ``[:, t]`` = flow t -> t+1; needed for frames after the
                centre (always, for K >= 3).
            centre: centre frame index; default ``T // 2``.

        Returns:
            per stride, the PatchGAN features (last = patch logits).
        """
        if frames.dim() != 5 or flow_bwd.dim() != 5 or flow_bwd.shape[:2] != frames.shape[:2]:
            raise ValueError(
                f"expected frames (B, T, 3, H, W) and flow_bwd (B, T, 2, H, W), got "
                f"{tuple(frames.shape)} and {tuple(flow_bwd.shape)}"
            )
        t_len = frames.shape[1]
        if t_len < self.required_frames:
            raise ValueError(
                f"strides {self.strides} with K={self.num_frames} need >= "
                f"{self.required_frames} frames, got {t_len}"
            )
        centre = t_len // 2 if centre is None else centre
        outputs = []
        for stride, d in zip(self.strides, self.discriminators):
            offsets = window_offsets(self.num_frames, stride)
            flows = centre_flows(flow_bwd, flow_fwd, centre, offsets)
            index = [centre + o for o in offsets]
            outputs.append(d(frames[:, index], sources[:, index], flows))
        return outputs
