"""The 70x70 PatchGAN discriminator of pix2pix and its multi-scale version (pix2pixHD).

A PatchGAN classifies every overlapping patch of a (condition, image) pair as real or fake;
with ``n_layers=3`` each output logit sees a 70x70 input patch.  The condition (the source
frame) is concatenated to the image along channels, so D judges the *pair*.

Forward returns the output of every block, not only the logits, so the generator can use a
feature-matching loss (pix2pixHD).  Conventions used across the package:

- :class:`NLayerDiscriminator` returns ``list[Tensor]``: the block features, the last being the
  patch logits (B, 1, h, w);
- :class:`MultiScaleDiscriminator` returns ``list[list[Tensor]]``: one such list per scale,
  finest first.

Why no BatchNorm and no dropout: train-mode BatchNorm makes a sample's output depend on its
batch neighbours, and dropout on chance.  In a discriminator that means the real/fake signal
for a frame, hence the generator's gradient, changes with what else is in the batch; in video
that is a flicker source.  Norms here are per sample: ``instance``, ``group`` or ``none``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .unet import init_weights, make_norm


def _concat_condition(image: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
    if condition is None:
        return image
    if condition.shape[0] != image.shape[0] or condition.shape[-2:] != image.shape[-2:]:
        raise ValueError(
            f"condition {tuple(condition.shape)} and image {tuple(image.shape)} differ in batch "
            "or size"
        )
    return torch.cat((condition, image), dim=1)


class NLayerDiscriminator(nn.Module):
    """pix2pix's PatchGAN: ``n_layers`` stride-2 4x4 convs, a stride-1 one, and a 1-channel head.

    Input (B, in_channels, H, W) with ``H, W >= min_size = 3 * 2**n_layers``; output logits
    (B, 1, H / 2**n_layers - 2, W / 2**n_layers - 2) (integer division).

    Args:
        in_channels: channels of ``cat(condition, image)``, e.g. 3 + 3.
        ndf: width of the first layer; layer ``n`` has ``ndf * min(2**n, 8)`` channels.
        n_layers: number of stride-2 layers (3 gives 70x70 patches).
        norm: ``instance`` (default), ``group`` or ``none``.
    """

    def __init__(
        self, in_channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance"
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.in_channels = in_channels
        self.min_size = 3 * 2**n_layers
        lrelu = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        blocks = [nn.Sequential(nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), lrelu())]
        prev = ndf
        for n in range(1, n_layers + 1):
            width = ndf * min(2**n, 8)
            stride = 2 if n < n_layers else 1  # the last feature layer keeps the resolution
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(prev, width, 4, stride=stride, padding=1),
                    make_norm(norm, width),
                    lrelu(),
                )
            )
            prev = width
        blocks.append(nn.Sequential(nn.Conv2d(prev, 1, 4, stride=1, padding=1)))
        self.blocks = nn.ModuleList(blocks)
        init_weights(self)

    def forward(
        self, image: torch.Tensor, condition: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Features of ``cat(condition, image)``; the last one is the patch logits (B, 1, h, w)."""
        x = _concat_condition(image, condition)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected (B, {self.in_channels}, H, W) after conditioning, got {tuple(x.shape)}"
            )
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"PatchGAN input {x.shape[-2]}x{x.shape[-1]} is too small; it needs at least "
                f"{self.min_size}x{self.min_size} (use fewer layers or scales)"
            )
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class MultiScaleDiscriminator(nn.Module):
    """``num_D`` PatchGANs on the input downsampled 1, 2, 4, ... times (pix2pixHD).

    Downsampling is ``AvgPool2d(3, stride=2, padding=1, count_include_pad=False)``.  The coarsest
    scale needs roughly ``3 * 2**(n_layers + num_D - 1)`` pixels on the short side.

    Args:
        in_channels: channels of ``cat(condition, image)``.
        ndf, n_layers, norm: as :class:`NLayerDiscriminator`.
        num_D: number of scales (1-3 are usual).

    Forward returns ``list[list[Tensor]]``: per scale (finest first), the block features, the
    last being the patch logits.
    """

    def __init__(
        self,
        in_channels: int,
        ndf: int = 64,
        n_layers: int = 3,
        num_D: int = 2,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        if num_D < 1:
            raise ValueError(f"num_D must be >= 1, got {num_D}")
        self.in_channels = in_channels
        self.discriminators = nn.ModuleList(
            [NLayerDiscriminator(in_channels, ndf, n_layers, norm) for _ in range(num_D)]
        )
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(
        self, image: torch.Tensor, condition: torch.Tensor | None = None
    ) -> list[list[torch.Tensor]]:
        x = _concat_condition(image, condition)
        outputs = []
        for scale, d in enumerate(self.discriminators):
            if scale > 0:
                x = self.downsample(x)
            if min(x.shape[-2:]) < d.min_size:
                raise ValueError(
                    f"input too small for {len(self.discriminators)} scales: scale {scale} sees "
                    f"{x.shape[-2]}x{x.shape[-1]}, a PatchGAN needs at least "
                    f"{d.min_size}x{d.min_size}"
                )
            outputs.append(d(x))
        return outputs
