"""Networks: generators, discriminators, flow sources and the one warp, plus config factories.

The factories take a plain mapping (a dict or an OmegaConf ``DictConfig``) and validate its
keys: a misspelt key is a ``ValueError`` naming the valid ones.  Keys starting with ``_``
(e.g. Hydra's ``_target_``) are ignored.

``build_generator(cfg)`` keys (defaults in brackets):

========================  ====================================================================
``name``                  ``framewise`` (pix2pix U-Net), ``temporal`` (recurrent), ``sr`` or
                          ``temporal_sr`` (×2 super-resolution, below) [framewise]
``in_channels``           source channels [3]
``out_channels``          output channels [3] (must be 3 for ``temporal``)
``ngf``                   base width [64]; 32 is ~4x cheaper
``depth``                 stride-2 levels; inputs are padded to a multiple of 2**depth [7]
``norm``                  ``instance``, ``group`` or ``none`` [instance]
``residual``              output ``clamp(x + tanh(correction))`` (restoration) [False]
``pad_mode``              ``reflect``, ``replicate`` or ``zeros`` [reflect]
``full_res``              full-resolution 3x3 conv layers beside the U-Net (its other layers
                          work at half size or less) [0]
========================  ====================================================================

``temporal`` only:

========================  ====================================================================
``flow``                  ``dis``, ``learned`` or ``raft`` [dis]
``use_prev_input``        also feed x[t-1] [False]
``use_validity``          also feed the flow's validity map [True]; without it inference
                          needs no forward-backward test (one DIS call a frame)
``flow_norm``             flow is fed divided by this many pixels [20.0]
``mask_bias``             initial blend-mask logit [2.0]
``dis_preset``            DIS preset (``ultrafast``, ``fast``, ``medium``) for ``flow=dis`` [fast]
``flow_width``            learned flow head width [32]
``flow_levels``           learned flow head stride-2 levels [3]
``raft_weights``          local RAFT state-dict file, required for ``flow=raft`` [None]
``raft_variant``          ``small`` or ``large`` [small]
``raft_iters``            RAFT refinement iterations [12]
========================  ====================================================================

``sr`` and ``temporal_sr`` (:mod:`.sr`: they compute at the input's resolution and output
twice its size): ``in_channels`` [3, the only choice], ``channels`` [32], ``layers`` [7];
``temporal_sr`` also ``mask_bias`` [2.0] and ``dis_preset`` [fast].

Every generator has ``config`` (the full, JSON-serialisable cfg with defaults filled in:
``build_generator(model.config)`` rebuilds it), ``multiple`` (its pad multiple),
``flow_source`` (``none`` for frame-wise) and ``is_temporal``.

``build_discriminator(cfg)``: ``in_channels`` [3], ``out_channels`` [3], ``ndf`` [64],
``n_layers`` [3], ``num_D`` [2], ``norm`` [instance].  Returns a
:class:`MultiScaleDiscriminator` (``num_D=1`` is a plain PatchGAN) called as
``D(image, condition) -> list[list[Tensor]]``.

``build_temporal_discriminator(cfg)``: ``in_channels`` [3], ``out_channels`` [3],
``num_frames`` [3], ``strides`` [[1]], ``ndf`` [64], ``n_layers`` [3], ``norm`` [instance].
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch.nn as nn

from .flow import LearnedFlow, RAFTFlow
from .patchgan import MultiScaleDiscriminator, NLayerDiscriminator
from .sr import SRNet, TemporalSRNet
from .temporal import InitReport, TemporalGenerator, TemporalOutput
from .temporal_d import TemporalDiscriminator, TemporalPatchDiscriminator
from .unet import UNet, UNetGenerator
from .warp import occlusion_mask, warp

__all__ = [
    "InitReport",
    "LearnedFlow",
    "MultiScaleDiscriminator",
    "NLayerDiscriminator",
    "RAFTFlow",
    "SRNet",
    "TemporalDiscriminator",
    "TemporalGenerator",
    "TemporalOutput",
    "TemporalPatchDiscriminator",
    "TemporalSRNet",
    "UNet",
    "UNetGenerator",
    "build_discriminator",
    "build_generator",
    "build_temporal_discriminator",
    "occlusion_mask",
    "warp",
]

GENERATORS = {"framewise": UNetGenerator, "temporal": TemporalGenerator, "sr": SRNet, "temporal_sr": TemporalSRNet}


def _checked_kwargs(cfg: Mapping[str, Any], allowed: list[str], what: str) -> dict[str, Any]:
    if not isinstance(cfg, Mapping):
        raise ValueError(f"{what} config must be a mapping, got {type(cfg).__name__}")
    kwargs = {str(k): v for k, v in cfg.items() if not str(k).startswith("_")}
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {what} config key(s) {unknown}; valid keys: {sorted(allowed)}")
    return kwargs


def _parameters(cls: type) -> list[str]:
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def build_generator(cfg: Mapping[str, Any]) -> nn.Module:
    """Build a generator from a config mapping (keys in the module docstring)."""
    cfg = dict(cfg)
    name = cfg.pop("name", "framewise")
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; choose one of {sorted(GENERATORS)}")
    cls = GENERATORS[name]
    return cls(**_checked_kwargs(cfg, _parameters(cls), f"{name} generator"))


def build_discriminator(cfg: Mapping[str, Any]) -> MultiScaleDiscriminator:
    """Build the conditional multi-scale PatchGAN; it sees ``cat(source, image)``."""
    allowed = ["in_channels", "out_channels", "ndf", "n_layers", "num_D", "norm"]
    kw = _checked_kwargs(cfg, allowed, "discriminator")
    channels = int(kw.pop("in_channels", 3)) + int(kw.pop("out_channels", 3))
    return MultiScaleDiscriminator(channels, **kw)


def build_temporal_discriminator(cfg: Mapping[str, Any]) -> TemporalDiscriminator:
    """Build D_T (keys in the module docstring)."""
    kw = _checked_kwargs(cfg, _parameters(TemporalDiscriminator), "temporal discriminator")
    return TemporalDiscriminator(**kw)
