"""The pix2pix U-Net generator (Isola et al., CVPR 2017), for any input size.

Layout, as in pix2pix's ``UnetGenerator`` (``unet_256`` is ``depth=8``):

- encoder: ``depth`` 4x4 stride-2 convolutions, widths ``ngf * min(2**i, 8)``; each level but
  the first is ``LeakyReLU(0.2) -> conv -> norm`` (the innermost has no norm: it is 1x1 at
  the network's minimum size);
- decoder: ``ReLU -> 4x4 stride-2 transposed conv -> norm``, the input of every level being the
  concatenation of the encoder feature at that level (skip) and the level below;
- output: ``Tanh`` (an image in [-1, 1]) or, with ``residual=True``,
  ``clamp(input_rgb + tanh(correction), -1, 1)``;
- optionally (``full_res`` > 0, not in pix2pix) a full-resolution path: ``full_res`` 3x3
  convolutions of width ``ngf // 2`` on the input, whose features the last layer (then a 3x3
  conv) sees beside the decoder's.  Every other layer works at half size or less, which cannot
  reach pixel-level detail such as compression's block edges and ringing.

Any size: the input is padded to a multiple of ``2**depth`` and the output cropped back, so the
output has the input's size, odd sizes included.

Why no BatchNorm and no dropout: a train-mode BatchNorm normalises each frame with statistics
of its batch neighbours, and dropout (which pix2pix keeps on at test time as its noise source)
makes a frame's output depend on chance. Both change a frame's output when nothing in the frame
changed: a flicker source in video. Instance or group norm look at one frame only, and there is
no dropout at all here, so eval-mode output is a deterministic function of the input frame.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

NORMS = ("instance", "group", "none")
PAD_MODES = ("reflect", "replicate", "zeros")


def make_norm(kind: str, channels: int) -> nn.Module:
    """A per-sample normalisation layer: ``instance``, ``group`` or ``none`` (identity).

    ``instance`` is pix2pix's ``InstanceNorm2d(affine=False, track_running_stats=False)``;
    ``group`` is ``GroupNorm(gcd(32, channels), channels)``.  No BatchNorm (see module docstring).
    """
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "group":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of {NORMS}")


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """pix2pix initialisation: conv weights ~ N(0, std), biases 0, norm scales ~ N(1, std)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Conv3d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.GroupNorm) and m.affine:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def pad_to_multiple(
    x: torch.Tensor, multiple: int, mode: str = "reflect"
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad ``x`` (B, C, H, W) so that H and W are multiples of ``multiple``.

    The padding is split between both sides (top/bottom, left/right) so the content stays
    centred.  ``reflect`` falls back to ``replicate`` when the padding is larger than the image
    (reflection cannot pad more than ``size - 1``).

    Returns:
        the padded tensor and the pads ``(left, right, top, bottom)`` for :func:`crop_pad`.
    """
    if x.dim() != 4:
        raise ValueError(f"expected (B, C, H, W), got {tuple(x.shape)}")
    if mode not in PAD_MODES:
        raise ValueError(f"unknown pad mode {mode!r}; choose one of {PAD_MODES}")
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    pads = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if ph == 0 and pw == 0:
        return x, pads
    if mode == "zeros":
        return F.pad(x, pads, mode="constant", value=0.0), pads
    if mode == "reflect" and (max(pads[:2]) >= w or max(pads[2:]) >= h):
        mode = "replicate"
    return F.pad(x, pads, mode=mode), pads


def crop_pad(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`: crop ``pads = (left, right, top, bottom)`` off ``x``."""
    left, right, top, bottom = pads
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]


def rgb_of(x: torch.Tensor) -> torch.Tensor:
    """The RGB image a residual output adds to: the first 3 channels, or a gray input repeated."""
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    if x.shape[1] < 3:
        raise ValueError(f"residual output needs 1 or >= 3 input channels, got {x.shape[1]}")
    return x[:, :3]


def to_image(logits: torch.Tensor, x: torch.Tensor | None, residual: bool) -> torch.Tensor:
    """Map raw decoder logits (B, 3, H, W) to an image in [-1, 1]: ``tanh`` or residual."""
    if residual:
        return torch.clamp(rgb_of(x) + torch.tanh(logits), -1.0, 1.0)
    return torch.tanh(logits)


def _down(in_ch: int, out_ch: int, norm: str | None, act: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.LeakyReLU(0.2)] if act else []
    layers.append(nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1))
    if norm is not None:
        layers.append(make_norm(norm, out_ch))
    return nn.Sequential(*layers)


def _up(in_ch: int, out_ch: int, norm: str | None) -> nn.Sequential:
    layers: list[nn.Module] = [nn.ReLU(), nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1)]
    if norm is not None:
        layers.append(make_norm(norm, out_ch))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """The pix2pix U-Net body: (B, C_in, H, W) -> raw logits (B, C_out, H, W), no output activation.

    H and W must be multiples of :attr:`multiple` ``= 2**depth`` (:class:`UNetGenerator` pads).
    Conv biases are kept everywhere, as pix2pix does with instance norm (redundant before a norm,
    but the layout and parameter count then match pix2pix's ``unet_256 --norm instance``:
    ``depth=8, ngf=64`` has 54,409,603 parameters; pix2pix's BatchNorm default has 54,413,955).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        ngf: width of the first level; level ``i`` has ``ngf * min(2**i, 8)`` channels.
        depth: number of stride-2 downsamplings (>= 2).
        norm: ``instance``, ``group`` or ``none``.
        full_res: number of full-resolution 3x3 conv layers (width ``ngf // 2``: at full size
            every channel is costly) in a path from the input to the last layer; 0 (pix2pix's
            layout): none, the last layer is the outermost transposed conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        ngf: int = 64,
        depth: int = 7,
        norm: str = "instance",
        full_res: int = 0,
    ) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"U-Net depth must be >= 2, got {depth}")
        if full_res < 0:
            raise ValueError(f"U-Net full_res must be >= 0, got {full_res}")
        if ngf < 1 or in_channels < 1 or out_channels < 1:
            raise ValueError("U-Net ngf, in_channels and out_channels must be positive")
        make_norm(norm, 8)  # validate the name early
        ch = [ngf * min(2**i, 8) for i in range(depth)]
        self.depth = depth
        self.multiple = 2**depth
        self.feature_channels = 2 * ch[0]
        # down[0] is the outermost level (no activation, no norm), down[-1] the innermost (no norm).
        self.down = nn.ModuleList(
            [_down(in_channels, ch[0], None, act=False)]
            + [_down(ch[i - 1], ch[i], norm, act=True) for i in range(1, depth - 1)]
            + [_down(ch[depth - 2], ch[depth - 1], None, act=True)]
        )
        # up[i] undoes down[i]; all but the innermost see the skip concatenation (2x channels).
        # With a full-resolution path up[0] gives features for the last layer, self.tail.
        self.full_res = full_res
        width = max(1, ngf // 2)
        up0_channels = width if full_res else out_channels
        self.up = nn.ModuleList(
            [
                nn.Sequential(
                    nn.ReLU(), nn.ConvTranspose2d(2 * ch[0], up0_channels, 4, stride=2, padding=1)
                )
            ]
            + [_up(2 * ch[i], ch[i - 1], norm) for i in range(1, depth - 1)]
            + [_up(ch[depth - 1], ch[depth - 2], norm)]
        )
        if full_res:
            head: list[nn.Module] = []
            for i in range(full_res):
                head += [nn.Conv2d(in_channels if i == 0 else width, width, 3, padding=1), nn.LeakyReLU(0.2)]
            self.head = nn.Sequential(*head)
            self.tail = nn.Conv2d(2 * width, out_channels, 3, padding=1)

    @property
    def last(self) -> nn.Module:
        """The layer that outputs the logits (a residual model zero-initialises it)."""
        return self.tail if self.full_res else self.up[0][-1]

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Run the U-Net.

        Args:
            x: (B, C_in, H, W), H and W multiples of ``2**depth``.
            return_features: also return the decoder's last half-size feature map, the input of
                ``up[0]``: (B, 2 * ngf, H / 2, W / 2).  Heads (e.g. a blend mask) can be built on it.

        Returns:
            logits (B, C_out, H, W), or ``(logits, features)``.
        """
        h, w = x.shape[-2:]
        if h % self.multiple or w % self.multiple:
            raise ValueError(
                f"UNet input {h}x{w} is not a multiple of {self.multiple}; pad it first"
            )
        full = self.head(x) if self.full_res else None
        skips = []
        for down in self.down:
            x = down(x)
            skips.append(x)
        x = self.up[-1](skips.pop())
        for i in range(self.depth - 2, 0, -1):
            x = self.up[i](torch.cat((skips[i], x), dim=1))
        features = torch.cat((skips[0], x), dim=1)
        logits = self.up[0](features)
        if full is not None:
            logits = self.tail(torch.cat((full, F.relu(logits)), dim=1))
        return (logits, features) if return_features else logits


class UNetGenerator(nn.Module):
    """Frame-wise pix2pix generator, any size: (B, C_in, H, W) -> (B, 3, H, W), both in [-1, 1].

    Default ``depth=7`` (pad multiple 128) rather than pix2pix's 8: the receptive field still
    covers the image at the sizes we train on (256-384 px), and padding to 128 rather than 256
    wastes far less compute on video sizes (640x360 pads to 640x384 instead of 768x512).

    No dropout (see the module docstring); pix2pix's noise came from test-time dropout, which is
    exactly what makes a video flicker.

    Args:
        in_channels: source channels (3 for RGB, 1 for gray).
        out_channels: output channels (3).
        ngf: base width (pix2pix: 64; 32 is 4x cheaper).
        depth: number of downsamplings; the input is padded to a multiple of ``2**depth``.
        norm: ``instance`` (default), ``group`` or ``none``.
        residual: output ``clamp(input_rgb + tanh(correction))`` instead of ``tanh``; trains much
            faster for restoration.  The output layer then starts at zero, so the untrained
            network is the identity.
        pad_mode: ``reflect`` (default), ``replicate`` or ``zeros``.
        full_res: full-resolution 3x3 conv layers beside the U-Net (:class:`UNet`); 0: none.
    """

    flow_source = "none"  # the inference engine supplies no flow to a frame-wise model
    is_temporal = False

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
    ) -> None:
        super().__init__()
        if pad_mode not in PAD_MODES:
            raise ValueError(f"unknown pad mode {pad_mode!r}; choose one of {PAD_MODES}")
        if residual and out_channels != 3:
            raise ValueError("residual output needs out_channels=3")
        self.config = {
            "name": "framewise",
            "in_channels": in_channels,
            "out_channels": out_channels,
            "ngf": ngf,
            "depth": depth,
            "norm": norm,
            "residual": residual,
            "pad_mode": pad_mode,
            "full_res": int(full_res),
        }
        self.residual = residual
        self.pad_mode = pad_mode
        self.body = UNet(in_channels, out_channels, ngf, depth, norm, int(full_res))
        self.multiple = self.body.multiple
        init_weights(self)
        if residual:
            nn.init.zeros_(self.body.last.weight)
            nn.init.zeros_(self.body.last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) in [-1, 1] -> (B, out_channels, H, W) in [-1, 1]; any H, W."""
        if x.dim() != 4 or x.shape[1] != self.config["in_channels"]:
            raise ValueError(
                f"expected input (B, {self.config['in_channels']}, H, W), got {tuple(x.shape)}"
            )
        padded, pads = pad_to_multiple(x, self.multiple, self.pad_mode)
        logits = crop_pad(self.body(padded), pads)
        return to_image(logits, x, self.residual)
