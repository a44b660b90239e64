"""Optical flow sources inside a network, behind one interface.

Every source returns a *backward* flow t -> t-1 ``(B, 2, H, W)`` in pixels (see
:mod:`vid2vid_lite.nn.warp`) together with a validity map ``(B, 1, H, W)`` (1 = trust it).

- ``dis``: OpenCV's DIS on the CPU, on the source frames (classical, no weights):
  :class:`vid2vid_lite.flow.DISFlow`, run outside the model (data loader / inference workers).
- ``learned``: :class:`LearnedFlow`, a small CNN inside the generator, on the device; trained
  with a flow loss against DIS flow of the target frames (vid2vid's design).
- ``raft``: :class:`RAFTFlow`, torchvision's RAFT loaded only from a local weights file.

The two ``nn.Module`` sources share one call: ``source(current, previous) -> (flow, valid)``
with frames (B, C, H, W) in [-1, 1].
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserError
from ..pretrained import require_local_weights
from .warp import occlusion_mask


def _check_pair(current: torch.Tensor, previous: torch.Tensor, channels: int | None = None) -> None:
    if current.dim() != 4 or current.shape != previous.shape:
        raise ValueError(
            f"flow expects two frames of the same shape (B, C, H, W), got {tuple(current.shape)} "
            f"and {tuple(previous.shape)}"
        )
    if channels is not None and current.shape[1] != channels:
        raise ValueError(f"flow expects {channels}-channel frames, got {current.shape[1]}")


class LearnedFlow(nn.Module):
    """A small flow + validity head: backward flow t -> t-1 from x[t] and x[t-1], on the device.

    ``levels`` stride-2 3x3 convs bring ``(x[t], x[t-1], x[t] - x[t-1])`` to 1/2**levels
    resolution, two more 3x3 convs refine, and a 3x3 head predicts flow (in coarse pixels) and a
    validity logit.  Both are upsampled bilinearly to full size; the flow is rescaled to full
    resolution pixels.  About 0.4 M parameters at ``width=32``; no correlation volume, so it is
    meant for the small motions of consecutive frames (tens of pixels at most).

    Trained with :func:`vid2vid_lite.losses.flow_loss` against DIS flow of the target frames
    (and optionally :func:`vid2vid_lite.losses.validity_loss` against its occlusion map).

    Args:
        in_channels: channels of one source frame.
        width: channels of the first layer (then 2x, capped at 4x).
        levels: number of stride-2 layers (flow resolution 1/2**levels).
    """

    def __init__(self, in_channels: int = 3, width: int = 32, levels: int = 3) -> None:
        super().__init__()
        if levels < 1 or width < 1:
            raise ValueError(f"LearnedFlow needs levels >= 1 and width >= 1, got {levels}, {width}")
        self.in_channels = in_channels
        layers: list[nn.Module] = []
        prev = 3 * in_channels
        for i in range(levels):
            ch = width * min(2**i, 4)
            layers += [nn.Conv2d(prev, ch, 3, stride=2, padding=1), nn.LeakyReLU(0.1)]
            prev = ch
        for _ in range(2):
            layers += [nn.Conv2d(prev, prev, 3, padding=1), nn.LeakyReLU(0.1)]
        self.encoder = nn.Sequential(*layers)
        self.head = nn.Conv2d(prev, 3, 3, padding=1)
        # Start from zero flow and "mostly valid", i.e. plain copying of the previous frame.
        nn.init.normal_(self.head.weight, 0.0, 1e-3)
        nn.init.zeros_(self.head.bias)
        nn.init.constant_(self.head.bias[2:], 3.0)

    def forward(
        self, current: torch.Tensor, previous: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames (B, C, H, W) in [-1, 1] -> flow (B, 2, H, W) in pixels, validity (B, 1, H, W)."""
        _check_pair(current, previous, self.in_channels)
        h, w = current.shape[-2:]
        coarse = self.head(self.encoder(torch.cat((current, previous, current - previous), dim=1)))
        hc, wc = coarse.shape[-2:]
        coarse = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
        scale = coarse.new_tensor([w / wc, h / hc]).view(1, 2, 1, 1)
        return coarse[:, :2] * scale, torch.sigmoid(coarse[:, 2:])


RAFT_VARIANTS = ("small", "large")


def load_raft(weights_path: str | os.PathLike | None, variant: str = "small") -> nn.Module:
    """torchvision's RAFT built with ``weights=None`` and loaded from a local state-dict file.

    Nothing is downloaded: without a path this raises :class:`~vid2vid_lite.errors.UserError`.
    The file is a plain state dict (``torch.save(model.state_dict(), path)``; a
    ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper and a ``module.`` prefix are accepted).
    """
    if variant not in RAFT_VARIANTS:
        raise ValueError(f"unknown RAFT variant {variant!r}; choose one of {RAFT_VARIANTS}")
    require_local_weights(weights_path, "flow=raft", "raft_weights", "Use flow=dis or flow=learned otherwise.")
    # torchvision is slow to import: only when RAFT is asked for.
    from torchvision.models.optical_flow import raft_large, raft_small

    model = (raft_small if variant == "small" else raft_large)(weights=None)
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise UserError(
            f"{weights_path} is not a torchvision RAFT-{variant} state dict: {err}"
        ) from err
    return model


class RAFTFlow(nn.Module):
    """RAFT (torchvision) as a flow source, frozen and always in eval mode.

    Eval mode is forced because ``raft_large``'s context encoder has BatchNorm (a flicker source
    in train mode, and its running statistics would drift).  Inputs are padded (replicate) to a
    multiple of 8 and at least 128 px, RAFT's minimum.  With ``check`` the validity map is the
    forward-backward test of :func:`~vid2vid_lite.nn.warp.occlusion_mask` (both directions in one
    batched call); without, it is all ones.

    Args:
        weights_path: local state-dict file (required; see :func:`load_raft`).
        variant: ``small`` (1 M parameters) or ``large`` (5.3 M).
        num_flow_updates: RAFT's recurrent refinement steps (torchvision's default 12).
        check: compute the occlusion test.
    """

    def __init__(
        self,
        weights_path: str | os.PathLike | None,
        variant: str = "small",
        num_flow_updates: int = 12,
        check: bool = True,
    ) -> None:
        super().__init__()
        self.raft = load_raft(weights_path, variant)
        self.raft.requires_grad_(False)
        self.raft.eval()
        self.num_flow_updates = num_flow_updates
        self.check = check

    def train(self, mode: bool = True) -> RAFTFlow:
        super().train(mode)
        self.raft.eval()
        return self

    @torch.no_grad()
    def forward(
        self, current: torch.Tensor, previous: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """RGB frames (B, 3, H, W) in [-1, 1] -> flow (B, 2, H, W) pixels, validity (B, 1, H, W)."""
        _check_pair(current, previous, 3)
        h, w = current.shape[-2:]
        ph, pw = max(128, h + (-h) % 8) - h, max(128, w + (-w) % 8) - w
        first, second = current, previous
        if self.check:  # both directions in one batched call
            first, second = torch.cat((current, previous)), torch.cat((previous, current))
        pad = lambda x: F.pad(x.float(), (0, pw, 0, ph), mode="replicate")  # noqa: E731
        flows = self.raft(pad(first), pad(second), num_flow_updates=self.num_flow_updates)[-1]
        flows = flows[..., :h, :w].to(current.dtype)
        if not self.check:
            return flows, torch.ones_like(flows[:, :1])
        bwd, fwd = flows.chunk(2)
        return bwd, occlusion_mask(bwd, fwd)
