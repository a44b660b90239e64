"""``python -m vid2vid_lite.run`` as tools/results.py measures it: a user's command, in fp32 (so
that the numbers do not depend on whether the CPU computes bf16), into a PNG folder (lossless)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def translate(clip: Path, weights: str | Path, out: Path, *extra: str) -> Path:
    """``run`` on ``clip`` into the PNG folder ``out`` (replaced if there), in fp32; ``extra``:
    more ``key=value`` options (e.g. ``guide=``)."""
    if out.exists():
        shutil.rmtree(out)
    subprocess.run([sys.executable, "-m", "vid2vid_lite.run", str(clip), f"weights={weights}", f"output={out}",
                    "progress=false", "precision=fp32", *extra], check=True, cwd=ROOT, capture_output=True)
    return out
