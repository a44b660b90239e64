"""The process group of a training run: DDP under ``torchrun`` (or SLURM), or one process.

Every helper is a no-op for a single process, so the training code calls them unconditionally.
gloo on the CPU, nccl on CUDA; rank 0 logs, saves and prepares the data.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as tdist
from torch import nn

from ..cli import pick_device
from ..errors import UserError


@dataclass
class DistInfo:
    """This process's place in the (possibly single-process) group."""

    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def reduce_device(self) -> torch.device:
        """Where collectives run: the GPU under nccl, the CPU under gloo."""
        return self.device if self.device.type == "cuda" else torch.device("cpu")


def init_distributed(device_name: str) -> DistInfo:
    """Join the process group that ``torchrun`` describes (``WORLD_SIZE`` > 1), else run alone.

    gloo on CPU, nccl on CUDA; each process takes ``cuda:LOCAL_RANK``.  Under SLURM with several
    tasks and no torchrun (the submitit launcher), the variables come from SLURM's."""
    if "WORLD_SIZE" not in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        try:
            from submitit.helpers import TorchDistributedEnvironment

            TorchDistributedEnvironment().export()
        except ImportError:
            raise UserError("several SLURM tasks but no torchrun: install submitit (the launchers extra)") from None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_name)
    if world <= 1:
        return DistInfo(device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not tdist.is_initialized():
        # Long timeout: rank 0 may spend a while decoding videos and computing flows.
        tdist.init_process_group(backend, timeout=datetime.timedelta(hours=2))
    return DistInfo(device, rank, world, local_rank)


def close_distributed(dist: DistInfo) -> None:
    """Leave the process group (if any)."""
    if dist.enabled and tdist.is_initialized():
        tdist.destroy_process_group()


def barrier(dist: DistInfo) -> None:
    if dist.enabled:
        tdist.barrier()


def any_rank(flag: bool, dist: DistInfo) -> bool:
    """True on every rank when ``flag`` is True on any (so all ranks stop at the same step)."""
    if not dist.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=dist.reduce_device)
    tdist.all_reduce(value, op=tdist.ReduceOp.MAX)
    return bool(value.item())


def mean_over_ranks(values: torch.Tensor, dist: DistInfo) -> torch.Tensor:
    """The mean of ``values`` (any shape) over all ranks."""
    if not dist.enabled:
        return values
    values = values.to(dist.reduce_device)
    tdist.all_reduce(values)
    return values / dist.world


def broadcast_object(obj, dist: DistInfo):
    """Rank 0's ``obj`` on every rank."""
    if not dist.enabled:
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj, dist: DistInfo) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not dist.enabled:
        return [obj]
    objects = [None] * dist.world
    tdist.all_gather_object(objects, obj)
    return objects


def parameter_digest(*models: nn.Module | None) -> str:
    """SHA-1 of every parameter and buffer of ``models``: equal on all DDP ranks when they are in
    sync."""
    digest = hashlib.sha1()
    for model in models:
        if model is not None:
            for name, p in model.state_dict().items():
                digest.update(name.encode())
                digest.update(p.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def shared_run_dir(run_dir: Path, dist: DistInfo) -> Path:
    """All ranks use rank 0's run directory (Hydra's ``${now:...}`` may differ by a second
    between processes); a rank's own, now unused, Hydra folder is removed."""
    shared = Path(broadcast_object(str(run_dir), dist))
    if shared != run_dir and run_dir.is_dir():
        leftovers = {p.name for p in run_dir.iterdir()}
        if leftovers <= {".hydra", "train.log"}:
            shutil.rmtree(run_dir, ignore_errors=True)
    return shared
