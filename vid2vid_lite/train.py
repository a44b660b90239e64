"""Train a model on your own videos.

    python -m vid2vid_lite.train data.train=PATH data.task=TASK model=framewise|temporal train.steps=N
                                 [hydra.run.dir=DIR] [key=value ...]
    torchrun --nproc_per_node=N -m vid2vid_lite.train ...        # DistributedDataParallel
    python -m vid2vid_lite.train -m model=framewise,temporal loss.warp=0,10 ...   # a sweep

The run directory (``runs/train/<time>`` unless ``hydra.run.dir`` says otherwise) holds
``checkpoints/`` (``latest.pt``, ``latest.safetensors``, periodic ``step_NNNNNN.pt``), the
resolved ``config.yaml``, ``tensorboard/`` and ``metrics.json``.  ``python -m vid2vid_lite.run
INPUT weights=RUN_DIR`` translates with its latest checkpoint.  Every option is in
``vid2vid_lite/conf/train.yaml`` and its groups; docs/TRAINING.md explains them.
"""

from __future__ import annotations

import sys
import warnings

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from .errors import report_user_errors


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@report_user_errors
def main(cfg: DictConfig) -> float | None:
    warnings.filterwarnings("ignore", module="torch")  # keep user output readable
    from .engine.allocator import keep_freed_memory
    from .engine.trainer import Stopped, train  # torch and friends load after argument parsing

    keep_freed_memory()  # per-step activations reuse memory instead of new zeroed pages

    try:
        metrics = train(cfg, HydraConfig.get().runtime.output_dir)
    except Stopped as stop:
        sys.exit(stop.code)  # Hydra lets SystemExit through: the shell sees 128 + signal
    # The value a Hydra sweeper would optimise: validation PSNR, when there was a validation.
    return (metrics.get("val") or {}).get("psnr")


if __name__ == "__main__":
    main()
