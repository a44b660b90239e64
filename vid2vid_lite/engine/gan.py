"""The GAN of a training run: the networks, their losses and optimisers, and one training step.

As in BasicSR, this "model" is kept apart from the loop (engine/trainer.py: data, logging,
validation, checkpoints' timing).  One step, in pix2pix's order (generate, update D, update G)::

    G over the clip: frame-wise (all B*T frames at once) or recurrent (previous output warped,
                     engine/recurrent.py; truncated backprop every ``train.tbptt`` frames)
    D step:  image D on (A, fake) vs (A, real) frames; D_T on K-frame windows of the clip
    G step:  L1 + GAN + feature matching (+ VGG) per frame; warp, mask and flow terms on frame
             pairs; temporal GAN on the clip
    EMA of G (optional), LR schedule: constant, then linear decay to 0

Mixed precision on CUDA (bf16 where supported, else fp16 with loss scaling), channels_last on
CUDA, DistributedDataParallel around G's clip runner, D and D_T under ``torchrun``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ..checkpoint import load_generator
from ..datasets.tasks import Task
from ..errors import UserError
from ..image import to_float
from ..losses import (
    GANLoss, VGGPerceptualLoss, feature_matching_loss, flow_loss, long_term_loss, mask_regularizer, warp_loss,
)
from ..nn import build_discriminator, build_generator, build_temporal_discriminator
from ..nn.warp import resize_flow
from .config import Precision, linear_decay, model_configs
from .distributed import DistInfo
from .precision import autocast_for
from .recurrent import Recurrence

#: The loss table: every term's weight comes from ``loss.<name>`` (0: off).
LOSS_TERMS = ("l1", "gan", "fm", "warp", "long", "flow", "mask", "temporal_gan", "vgg")


class ClipGenerator(nn.Module):
    """Run a generator over a clip: ``forward(x (B, T, C, H, W), flow, valid) -> dict``.

    Frame-wise generators see the B*T frames as one batch.  Temporal generators run frame
    after frame through a :class:`Recurrence` (the first frame of the clip starts a shot;
    ``tbptt > 0`` detaches the fed-back output every ``tbptt`` frames).

    Returns ``out`` (B, T, 3, H, W) and, for temporal generators, ``mask`` (B, T, 1, H, W),
    ``flow`` (B, T, 2, H, W) and ``valid`` (B, T, 1, H, W) as used by the model.  One module so
    that DistributedDataParallel sees one forward per step.
    """

    def __init__(self, generator: nn.Module, tbptt: int = 0, channels_last: bool = False) -> None:
        super().__init__()
        self.generator = generator
        self.tbptt = int(tbptt or 0)
        self.channels_last = channels_last

    def _cl(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward(self, x: torch.Tensor, flow: torch.Tensor | None = None, valid: torch.Tensor | None = None) -> dict:
        b, t_len = x.shape[:2]
        g = self.generator
        if not getattr(g, "is_temporal", False):
            out = g(self._cl(x.flatten(0, 1))).unflatten(0, (b, t_len))
            return {"out": out, "mask": None, "flow": None, "valid": None}
        given = g.flow_source == "dis"
        if given and t_len > 1 and flow is None:
            raise ValueError("a flow=dis generator needs the clip's flow")
        recurrence = Recurrence(g, self.tbptt)
        results = [
            recurrence.step(
                self._cl(x[:, t]), flow=flow[:, t] if given else None,
                valid=valid[:, t] if given and valid is not None else None,
            )
            for t in range(t_len)
        ]
        stack = lambda name: torch.stack([getattr(r, name) for r in results], dim=1)  # noqa: E731
        return {"out": stack("out"), "mask": stack("mask"), "flow": stack("flow"), "valid": stack("valid")}


class EMA:
    """Exponential moving average of a model's parameters (buffers are copied)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.lerp_(p.detach(), 1.0 - self.decay)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(0, 1)


def _split(pred, n: int):
    """Split every tensor of a discriminator output (nested lists) at batch index ``n``."""
    if isinstance(pred, torch.Tensor):
        return pred[:n], pred[n:]
    pairs = [_split(p, n) for p in pred]
    return [p[0] for p in pairs], [p[1] for p in pairs]


class VideoGAN:
    """G, D and (for temporal models trained with ``loss.temporal_gan``) D_T, with the loss table,
    optimisers, LR schedules, loss scalers and EMA of one run.

    ``VideoGAN(cfg, task, precision)`` builds everything on the CPU; :meth:`load_state_dict`
    resumes or :meth:`init_from_framewise` initialises; :meth:`to_device` moves and wraps for
    DDP; then :meth:`train_step` per batch.  :meth:`state_dict` is what a checkpoint keeps.
    """

    def __init__(self, cfg: DictConfig, task: Task, precision: Precision) -> None:
        self.task = task
        self.precision = precision
        g_cfg, d_cfg, dt_cfg, self.init_from = model_configs(cfg.model, task)
        self.loss_w = {k: float(cfg.loss.get(k, 0.0) or 0.0) for k in LOSS_TERMS}
        # The warp terms on the error y - target instead of y: the output's temporal change must
        # match the target's, not be zero (deflicker: a look that is itself unstable is kept).
        self.warp_relative = bool(cfg.loss.get("warp_relative", False))
        try:
            self.G = build_generator(g_cfg)
            self.D = build_discriminator(d_cfg)
            self.temporal = bool(getattr(self.G, "is_temporal", False))
            use_dt = self.temporal and self.loss_w["temporal_gan"] > 0 and dt_cfg
            self.DT = build_temporal_discriminator(dt_cfg) if use_dt else None
        except ValueError as err:
            raise UserError(f"model config: {err}") from None
        # A discriminator that no loss uses is kept (checkpoints keep one layout) but never
        # trained, which saves its forward and backward passes: the image D without a GAN or
        # feature-matching term, both without D_T as well (L1-only runs).
        self.image_adversarial = bool(self.loss_w["gan"] or self.loss_w["fm"])
        self.adversarial = self.image_adversarial or self.DT is not None
        try:
            self.gan = GANLoss(str(cfg.loss.gan_mode))
        except ValueError as err:
            raise UserError(f"loss.gan_mode: {err}") from None
        self.vgg = VGGPerceptualLoss(cfg.loss.get("vgg_weights")) if self.loss_w["vgg"] > 0 else None
        self._build_optimisation(cfg, int(cfg.train.steps))
        self.device = torch.device("cpu")
        self.tbptt = int(cfg.train.tbptt or 0)
        self.runner: nn.Module = ClipGenerator(self.G, self.tbptt)
        self.D_step: nn.Module = self.D
        self.DT_step: nn.Module | None = self.DT
        self.last: tuple[dict, torch.Tensor] | None = None  # the last step's batch and fakes

    def _build_optimisation(self, cfg: DictConfig, steps: int) -> None:
        self.opt_g = instantiate(cfg.optim.generator, _convert_="all")(self.G.parameters())
        d_params = list(self.D.parameters()) + (list(self.DT.parameters()) if self.DT else [])
        self.opt_d = instantiate(cfg.optim.discriminator, _convert_="all")(d_params)
        decay = linear_decay(steps, cfg.optim.decay_start)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, decay)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, decay)
        self.scaler_g = torch.amp.GradScaler("cuda", enabled=self.precision.scaler)
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=self.precision.scaler)
        ema = float(cfg.train.ema or 0)
        self.ema = EMA(self.G, ema) if ema > 0 else None

    @property
    def inference_model(self) -> nn.Module:
        """The generator ``run`` gets: the EMA when enabled."""
        return self.ema.model if self.ema is not None else self.G

    @property
    def networks(self) -> tuple[nn.Module | None, ...]:
        """G, D and D_T (None without one)."""
        return self.G, self.D, self.DT

    # -- setup ----------------------------------------------------------------------------
    def init_from_framewise(self) -> str:
        """Start the temporal G from the frame-wise checkpoint ``model.init_from`` names;
        returns what was copied."""
        if not self.temporal:
            raise UserError("model.init_from initialises a temporal model from a frame-wise one; use model=temporal")
        framewise, _ = load_generator(str(self.init_from))
        if getattr(framewise, "is_temporal", False):
            raise UserError(f"model.init_from={self.init_from} is a temporal checkpoint; give a frame-wise one")
        report = str(self.G.init_from_framewise(framewise))
        if self.ema is not None:  # the average starts from the initialised weights, not the random ones
            self.ema.model.load_state_dict(self.G.state_dict())
        return report

    def to_device(self, device: torch.device, channels_last: bool, dist: DistInfo) -> None:
        """Move every network (and the optimiser state) to ``device``; wrap for DDP."""
        self.device = device
        for m in (self.G, self.D, self.DT, self.vgg, self.ema.model if self.ema else None):
            if m is not None:
                m.to(device)
                if channels_last:
                    m.to(memory_format=torch.channels_last)
        self.runner = ClipGenerator(self.G, self.tbptt, channels_last)
        if dist.enabled:
            ids = [device.index] if device.type == "cuda" else None
            # No buffers to sync: instance/group norms keep no running statistics.
            self.runner = DDP(self.runner, device_ids=ids)
            self.D_step = DDP(self.D, device_ids=ids)
            if self.DT is not None:
                self.DT_step = DDP(self.DT, device_ids=ids)
        for opt in (self.opt_g, self.opt_d):
            for state in opt.state.values():
                for k, v in state.items():
                    if isinstance(v, torch.Tensor) and k != "step":
                        state[k] = v.to(device)

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Every network, optimiser, schedule and loss scaler (``generator``: what ``run`` gets)."""
        state = {
            "generator": self.inference_model.state_dict(),
            "generator_train": self.G.state_dict(),
            "discriminator": self.D.state_dict(),
            "optim_g": self.opt_g.state_dict(),
            "optim_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
        }
        if self.DT is not None:
            state["temporal_discriminator"] = self.DT.state_dict()
        if self.ema is not None:
            state["ema"] = self.ema.model.state_dict()
        return state

    def load_state_dict(self, state: dict, path) -> None:
        """Resume from a training state (``path`` names it in errors)."""
        if state["config"]["generator"] != self.G.config:
            raise UserError(
                f"{path} holds a different generator ({state['config']['generator']}) than this run's "
                f"model config ({self.G.config}); resume with the same model settings"
            )
        try:
            self.G.load_state_dict(state["generator_train"])
            self.D.load_state_dict(state["discriminator"])
            if self.DT is not None:
                self.DT.load_state_dict(state["temporal_discriminator"])
            self.opt_g.load_state_dict(state["optim_g"])
            self.opt_d.load_state_dict(state["optim_d"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise UserError(f"{path} does not fit this run's models or losses: {err}") from None
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        self.scaler_g.load_state_dict(state["scaler_g"])
        self.scaler_d.load_state_dict(state["scaler_d"])
        if self.ema is not None:
            self.ema.model.load_state_dict(state.get("ema", state["generator_train"]))

    # -- one step -------------------------------------------------------------------------
    def autocast(self):
        return autocast_for(self.device, self.precision.name)

    def _batch(self, batch: dict) -> dict:
        """The batch on the device, in [-1, 1]: ``x`` (the input), ``y`` (the target), the
        flows at the target's size (``flow``, ``flow_fwd``, ``valid``: what the losses and D_T
        see), ``x_flow`` / ``x_valid`` (the generator's, at the input's size) and ``cond`` (the
        input at the target's size, the discriminators' condition).  They differ for a ×2
        task only."""
        nb = self.device.type == "cuda"
        out = {"x": to_float(batch["a"].to(self.device, non_blocking=nb)), "y": to_float(batch["b"].to(self.device, non_blocking=nb))}
        for k in ("flow", "flow_fwd", "valid"):
            if k in batch:
                out[k] = batch[k].to(self.device, non_blocking=nb)
        out["cond"], out["x_flow"], out["x_valid"] = out["x"], out.get("flow"), out.get("valid")
        small, big = out["x"].shape[-2:], out["y"].shape[-2:]
        if small != big:
            b, t = out["x"].shape[:2]
            out["cond"] = F.interpolate(_flat(out["x"]), size=big, mode="bilinear", align_corners=False).unflatten(0, (b, t))
            if "flow" in out:
                flow, valid = resize_flow(_flat(out["flow"]), small, _flat(out["valid"]))
                out["x_flow"], out["x_valid"] = flow.unflatten(0, (b, t)), valid.unflatten(0, (b, t))
        return out

    def _use_dt(self, x: torch.Tensor) -> bool:
        return self.DT is not None and x.shape[1] >= self.DT.required_frames

    def _d_losses(self, b: dict, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        x, y = b["cond"], b["y"]
        losses: dict[str, torch.Tensor] = {}
        if self.image_adversarial:
            pred = self.D_step(torch.cat([_flat(fake), _flat(y)]), torch.cat([_flat(x), _flat(x)]))
            p_fake, p_real = _split(pred, x.shape[0] * x.shape[1])
            losses = {"d_fake": self.gan(p_fake, False), "d_real": self.gan(p_real, True)}
        if self._use_dt(x):
            flows, fwd = torch.cat([b["flow"], b["flow"]]), torch.cat([b["flow_fwd"], b["flow_fwd"]])
            pred_t = self.DT_step(torch.cat([fake, y]), torch.cat([x, x]), flows, fwd)
            pt_fake, pt_real = _split(pred_t, x.shape[0])
            losses["dt_fake"] = self.gan(pt_fake, False)
            losses["dt_real"] = self.gan(pt_real, True)
        return losses

    def _g_losses(self, b: dict, gen: dict) -> dict[str, torch.Tensor]:
        w = self.loss_w
        x, y, fake = b["cond"], b["y"], gen["out"]
        losses: dict[str, torch.Tensor] = {}
        if w["l1"]:
            losses["l1"] = F.l1_loss(fake.float(), y)
        if w["gan"] or w["fm"]:
            pred_fake = self.D(_flat(fake), _flat(x))  # the bare module: no DDP sync for D here
            if w["gan"]:
                losses["gan"] = self.gan(pred_fake, True, for_discriminator=False)
            if w["fm"]:
                with torch.no_grad():
                    pred_real = self.D(_flat(y), _flat(x))
                losses["fm"] = feature_matching_loss(pred_fake, pred_real)
        if self.vgg is not None:
            losses["vgg"] = self.vgg(_flat(fake).float(), _flat(y))
        if fake.shape[1] > 1:
            losses.update(self._pair_losses(b, gen))
        if w["temporal_gan"] and self._use_dt(x):
            pred_t = self.DT(fake, x, b["flow"], b["flow_fwd"])
            losses["temporal_gan"] = self.gan(pred_t, True, for_discriminator=False)
        return losses

    def _pair_losses(self, b: dict, gen: dict) -> dict[str, torch.Tensor]:
        """The terms on consecutive frames: warp, long-term, mask regulariser, learned flow."""
        w, fake, later = self.loss_w, gen["out"], slice(1, None)
        losses: dict[str, torch.Tensor] = {}
        # warp(y - T) = warp(y) - warp(T): penalising the error's change penalises only the
        # output's temporal change beyond the target's own
        seq = fake.float() - b["y"] if self.warp_relative else fake.float()
        if w["warp"] and "flow" in b:
            losses["warp"] = warp_loss(
                _flat(seq[:, later]), _flat(seq[:, :-1]), _flat(b["flow"][:, later]), _flat(b["valid"][:, later])
            )
        if w["long"] and "flow" in b and fake.shape[1] >= 3:
            losses["long"] = long_term_loss(seq, b["flow"], b["valid"])
        if w["mask"] and gen["mask"] is not None:
            losses["mask"] = mask_regularizer(_flat(gen["mask"][:, later]).float(), _flat(gen["valid"][:, later]).float())
        if w["flow"] and self.temporal and self.G.flow_source == "learned":
            losses["flow"] = flow_loss(_flat(gen["flow"][:, later]).float(), _flat(b["flow"][:, later]), _flat(b["valid"][:, later]))
        return losses

    def _d_update(self, b: dict, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """D (and D_T) on the detached fakes; skipped when no loss uses a discriminator."""
        if not self.adversarial:
            return {}
        self.opt_d.zero_grad(set_to_none=True)
        with self.autocast():
            d_losses = self._d_losses(b, fake.detach())
        weights = {"d": 1.0, "dt": self.loss_w["temporal_gan"]}
        terms = [0.5 * w * (d_losses[f"{k}_fake"] + d_losses[f"{k}_real"]) for k, w in weights.items() if f"{k}_fake" in d_losses]
        if terms:  # none when only D_T is trained and the clip is shorter than it needs
            loss_d = sum(terms)
            self.scaler_d.scale(loss_d).backward()
            self.scaler_d.step(self.opt_d)
            self.scaler_d.update()
            d_losses["total"] = loss_d
        self.sched_d.step()
        return d_losses

    def _g_update(self, b: dict, gen: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """G against the updated D; then its EMA."""
        self.opt_g.zero_grad(set_to_none=True)
        with self.autocast():
            g_losses = self._g_losses(b, gen)
        loss_g = sum(self.loss_w[k] * v.float() for k, v in g_losses.items())
        self.scaler_g.scale(loss_g).backward()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        self.sched_g.step()
        if self.ema is not None:
            self.ema.update(self.G)
        return g_losses, loss_g

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        """One step on a batch of clips; returns the losses to log (detached)."""
        b = self._batch(batch)
        with self.autocast():
            gen = self.runner(b["x"], b["x_flow"], b["x_valid"])
        fake = gen["out"]
        d_losses = self._d_update(b, fake)
        g_losses, loss_g = self._g_update(b, gen)
        logs = {f"g_{k}": v.detach().float() for k, v in g_losses.items()}
        logs.update({k: v.detach().float() for k, v in d_losses.items() if k != "total"})
        logs["g_total"] = loss_g.detach()
        if d_losses:
            logs["d_total"] = d_losses["total"].detach().float()
        self.last = (b, fake.detach())
        return logs
