"""Losses: GAN variants, feature matching, warp, flow and mask terms, VGG perceptual loss.

Loss *weights* live in the training config, not here (pix2pix: L1 weight 100).  The plain L1
term is ``torch.nn.functional.l1_loss``.  Discriminator outputs follow
:mod:`vid2vid_lite.nn.patchgan`: a Tensor of logits, one discriminator's features
``list[Tensor]`` (last = logits) or a multi-scale / multi-stride ``list[list[Tensor]]``.
Terms over several discriminators are averaged (not summed), so a weight does not depend on the
number of scales.

Nothing here downloads anything: :class:`VGGPerceptualLoss` needs a local weights file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import UserError
from .nn.warp import chain_flows, warp
from .pretrained import require_local_weights

GAN_MODES = ("vanilla", "lsgan", "hinge")

DOutput = torch.Tensor | Sequence[torch.Tensor] | Sequence[Sequence[torch.Tensor]]


def _per_discriminator(output: DOutput) -> list[list[torch.Tensor]]:
    """Normalise a discriminator output to ``list[list[Tensor]]`` (per D, its features)."""
    if isinstance(output, torch.Tensor):
        return [[output]]
    output = list(output)
    if not output:
        raise ValueError("empty discriminator output")
    if isinstance(output[0], torch.Tensor):
        return [output]
    return [list(features) for features in output]


class GANLoss(nn.Module):
    """Adversarial loss: ``vanilla`` (BCE with logits), ``lsgan`` (MSE) or ``hinge``.

    ``loss(prediction, target_is_real, for_discriminator=True)``:

    - vanilla: ``BCE(logits, 1 if real else 0)``;
    - lsgan: ``mean((logits - (1 if real else 0))**2)``;
    - hinge, discriminator: ``mean(relu(1 - logits))`` for real, ``mean(relu(1 + logits))`` for
      fake; hinge, generator (``for_discriminator=False``, target real): ``-mean(logits)``.

    ``for_discriminator`` only matters for hinge.  The patch logits of each discriminator (the
    last feature) are used, and the loss is averaged over discriminators.
    """

    def __init__(self, mode: str = "lsgan") -> None:
        super().__init__()
        if mode not in GAN_MODES:
            raise ValueError(f"unknown GAN loss {mode!r}; choose one of {GAN_MODES}")
        self.mode = mode

    def _single(
        self, logits: torch.Tensor, target_is_real: bool, for_discriminator: bool
    ) -> torch.Tensor:
        if self.mode == "vanilla":
            target = torch.full_like(logits, 1.0 if target_is_real else 0.0)
            return F.binary_cross_entropy_with_logits(logits, target)
        if self.mode == "lsgan":
            return torch.mean((logits - (1.0 if target_is_real else 0.0)) ** 2)
        if for_discriminator:
            return (
                torch.mean(F.relu(1.0 - logits))
                if target_is_real
                else torch.mean(F.relu(1.0 + logits))
            )
        if not target_is_real:
            raise ValueError(
                "hinge loss for the generator is only defined with target_is_real=True"
            )
        return -torch.mean(logits)

    def forward(
        self, prediction: DOutput, target_is_real: bool, for_discriminator: bool = True
    ) -> torch.Tensor:
        losses = [
            self._single(features[-1], target_is_real, for_discriminator)
            for features in _per_discriminator(prediction)
        ]
        return torch.stack(losses).mean()


def feature_matching_loss(fake: DOutput, real: DOutput) -> torch.Tensor:
    """pix2pixHD feature matching: mean L1 between D's intermediate features of fake and real.

    The logits (last feature) are excluded and the real features are detached.  Averaged over
    the layers of each discriminator, then over discriminators.
    """
    fake_d, real_d = _per_discriminator(fake), _per_discriminator(real)
    if len(fake_d) != len(real_d):
        raise ValueError(f"fake has {len(fake_d)} discriminator outputs, real {len(real_d)}")
    per_d = []
    for f_feats, r_feats in zip(fake_d, real_d):
        if len(f_feats) != len(r_feats) or len(f_feats) < 2:
            raise ValueError("feature matching needs the same >= 2 features for fake and real")
        layers = [F.l1_loss(f, r.detach()) for f, r in zip(f_feats[:-1], r_feats[:-1])]
        per_d.append(torch.stack(layers).mean())
    return torch.stack(per_d).mean()


def masked_l1_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Mean absolute error over the masked elements.

    Args:
        prediction, target: (B, C, H, W).
        mask: (B, 1, H, W) or (B, C, H, W) weights in [0, 1], or None for a plain mean.

    Returns:
        ``sum(|p - t| * mask) / (sum(mask) * C / mask_channels)``; 0 if the mask is empty.
    """
    if prediction.shape != target.shape:
        raise ValueError(
            f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ"
        )
    error = (prediction - target).abs()
    if mask is None:
        return error.mean()
    if mask.dim() != 4 or mask.shape[0] != error.shape[0] or mask.shape[2:] != error.shape[2:]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match {tuple(error.shape)}")
    mask = mask.expand_as(error)
    return (error * mask).sum() / (mask.sum() + eps)


def warp_loss(
    current: torch.Tensor,
    previous: torch.Tensor,
    flow: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Temporal consistency on non-occluded pixels: ``|y[t] - warp(y[t-1], flow)|``, masked mean.

    Args:
        current: y[t] (B, C, H, W).
        previous: y[t-1] (B, C, H, W).
        flow: backward flow t -> t-1 (B, 2, H, W) in pixels.
        valid: (B, 1, H, W), 1 where the flow is trusted; None = everywhere.

    Keep its weight small relative to L1 (docs/DESIGN.md: a large warp weight makes the model copy).
    """
    return masked_l1_loss(current, warp(previous, flow), valid)


def long_term_loss(frames: torch.Tensor, flows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Lai et al.'s long-term consistency: every frame from the third on against the clip's
    first, ``|y[t] - warp(y[0], flow[t->0])|`` on pixels seen all the way, averaged over t.

    Args:
        frames: y (B, T, C, H, W), T >= 3.
        flows: backward flows t -> t-1 (B, T, 2, H, W) (entry 0 unused).
        valid: their validity (B, T, 1, H, W); a chain is valid where every link is.
    """
    if frames.shape[1] < 3:
        raise ValueError(f"the long-term loss needs clips of at least 3 frames, got {frames.shape[1]}")
    flow, seen, terms = flows[:, 1], valid[:, 1], []
    for t in range(2, frames.shape[1]):
        flow = chain_flows(flows[:, t], flow)
        seen = valid[:, t] * (warp(seen, flows[:, t]) > 0.999).to(seen.dtype)
        terms.append(masked_l1_loss(frames[:, t], warp(frames[:, 0], flow), seen))
    return torch.stack(terms).mean()


def flow_loss(
    prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """L1 between a predicted flow (B, 2, H, W) and a target flow (e.g. DIS on the target frames).

    Averaged over the valid pixels (``valid`` (B, 1, H, W), e.g. the target's occlusion test),
    in pixels per flow component.
    """
    if prediction.shape[1:2] != (2,):
        raise ValueError(f"flow must be (B, 2, H, W), got {tuple(prediction.shape)}")
    return masked_l1_loss(prediction, target, valid)


def validity_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of a predicted validity map (B, 1, H, W) in (0, 1) against a 0/1 map."""
    if prediction.shape != target.shape:
        raise ValueError(
            f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ"
        )
    return F.binary_cross_entropy(prediction.clamp(1e-6, 1 - 1e-6), target)


def mask_regularizer(mask: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Penalise copying the warped past: ``mean(1 - m)``, plus ``mean((1 - m) * (1 - valid))``.

    The blend mask m (B, 1, H, W) is 1 where the generator takes its new image.  Left alone
    with a warp loss, m collapses towards 0 (copy everything) and quality drifts away
    (docs/DESIGN.md).  The first term is a sparsity prior on copying: the model copies only where
    that wins more than the weight costs.  With ``valid`` (B, 1, H, W), copying occluded pixels
    (where the warped past is wrong by construction) is penalised once more; a mask of a smaller
    size (a body that runs at reduced size, ``model.body_scale``) is compared with ``valid``
    area-averaged to its size.
    """
    copy = 1.0 - mask
    loss = copy.mean()
    if valid is not None:
        if valid.shape[:2] != mask.shape[:2] or valid.dim() != 4:
            raise ValueError(f"valid {tuple(valid.shape)} and mask {tuple(mask.shape)} differ")
        if valid.shape != mask.shape:
            valid = F.adaptive_avg_pool2d(valid, mask.shape[-2:])
        loss = loss + (copy * (1.0 - valid)).mean()
    return loss


# VGG19 ``features`` indices ending the slices at relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
VGG_SLICE_ENDS = (2, 7, 12, 21, 30)
VGG_LAYER_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)  # pix2pixHD


def load_vgg19_features(weights_path: str | os.PathLike | None) -> nn.Sequential:
    """VGG19 ``features`` up to relu5_1, built with ``weights=None`` and loaded from a local file.

    The file is a torchvision ``vgg19`` state dict (``features.N.*`` keys, the classifier is
    ignored) or a state dict of ``vgg19().features`` alone (``N.*`` keys).  Without a path, or
    if the file is missing, raises :class:`~vid2vid_lite.errors.UserError`: nothing downloads.
    """
    require_local_weights(weights_path, "the VGG perceptual loss", "vgg_weights", "Set its weight to 0 to train without it.")
    from torchvision.models import vgg19  # torchvision is slow to import

    with torch.device("meta"):  # no random init of 140 M parameters that are overwritten anyway
        features = vgg19(weights=None).features[: VGG_SLICE_ENDS[-1]]
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    if any(k.startswith("features.") for k in state):
        state = {
            k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")
        }
    needed = features.state_dict().keys()
    missing = [k for k in needed if k not in state]
    if missing:
        raise UserError(f"{weights_path} is not a VGG19 state dict: missing {missing[:4]}...")
    features.load_state_dict({k: state[k].float() for k in needed}, assign=True)
    return features


class VGGPerceptualLoss(nn.Module):
    """pix2pixHD's VGG19 loss: ``sum_i w_i * L1(phi_i(x), phi_i(y))`` at relu1_1 ... relu5_1.

    Images (B, 3, H, W) in [-1, 1] are mapped to ImageNet-normalised [0, 1] inputs.  The network
    is frozen and kept in eval mode; the target's features are detached.

    Args:
        weights_path: local VGG19 weights (see :func:`load_vgg19_features`); required.
        layer_weights: the five ``w_i`` (default pix2pixHD's 1/32, 1/16, 1/8, 1/4, 1).
    """

    def __init__(
        self,
        weights_path: str | os.PathLike | None,
        layer_weights: Sequence[float] = VGG_LAYER_WEIGHTS,
    ) -> None:
        super().__init__()
        if len(layer_weights) != len(VGG_SLICE_ENDS):
            raise ValueError(f"need {len(VGG_SLICE_ENDS)} layer weights, got {len(layer_weights)}")
        features = load_vgg19_features(weights_path)
        starts = (0,) + VGG_SLICE_ENDS[:-1]
        self.slices = nn.ModuleList([features[a:b] for a, b in zip(starts, VGG_SLICE_ENDS)])
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.requires_grad_(False)
        self.eval()
        self.register_buffer(
            "mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False
        )

    def train(self, mode: bool = True) -> VGGPerceptualLoss:
        return super().train(False)  # a fixed feature extractor

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + 1.0) / 2.0 - self.mean) / self.std

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if prediction.shape != target.shape or prediction.dim() != 4 or prediction.shape[1] != 3:
            raise ValueError(
                f"expected two (B, 3, H, W) images, got {tuple(prediction.shape)} and "
                f"{tuple(target.shape)}"
            )
        with torch.no_grad():  # the target is a constant: no graph through its features
            y = self._normalise(target)
            target_features = []
            for block in self.slices:
                y = block(y)
                target_features.append(y)
        x = self._normalise(prediction)
        loss = prediction.new_zeros(())
        for block, weight, y in zip(self.slices, self.layer_weights, target_features):
            x = block(x)
            loss = loss + weight * F.l1_loss(x, y)
        return loss
