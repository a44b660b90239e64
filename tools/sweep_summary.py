"""Summarise a training sweep: one row per job, its overrides and its metrics.

    python tools/sweep_summary.py SWEEP_DIR [--csv PATH] [--all-overrides] [--wide]

SWEEP_DIR is what ``python -m vid2vid_lite.train -m ...`` wrote (by default
``multirun/train/<time>``): one folder per job with ``metrics.json`` and ``.hydra/``.  Prints a
markdown table (overrides that differ between jobs, then the final losses and validation
metrics) and writes every column as CSV (default ``SWEEP_DIR/summary.csv``).  A job without
``metrics.json`` (failed or still running) gets a row with its status.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from pathlib import Path

# Metric columns first in this order, the rest alphabetically after them.
PREFERRED = (
    "status", "step", "val.psnr", "val.psnr_input", "val.ssim", "val.ewarp", "val.ewarp_ref", "val.tof",
    "val.flicker", "losses.g_l1", "losses.g_warp", "losses.g_total", "losses.d_total", "it_per_s",
)
SKIPPED = {"overrides", "task", "model", "steps", "resumed_from", "world_size", "interrupted", "rank_parameter_sha1", "time_s"}


def natural_key(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def read_overrides(job: Path, metrics: dict | None) -> list[str]:
    if metrics and metrics.get("overrides") is not None:
        return list(metrics["overrides"])
    path = job / ".hydra" / "overrides.yaml"
    if path.is_file():  # a YAML list of strings: "- key=value" lines
        return [line[2:].strip().strip("'\"") for line in path.read_text().splitlines() if line.startswith("- ")]
    return []


def split_override(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    return key.lstrip("+~"), value


def collect(sweep: Path) -> list[dict]:
    """One dict per job: ``job``, its overrides by key, ``status`` and the flattened metrics."""
    jobs = {p.parent for p in sweep.rglob("metrics.json")}
    jobs |= {p.parent.parent for p in sweep.rglob(".hydra/overrides.yaml")}
    rows = []
    for job in sorted(jobs, key=lambda p: natural_key(str(p.relative_to(sweep)))):
        path = job / "metrics.json"
        metrics = json.loads(path.read_text()) if path.is_file() else None
        row: dict = {"job": str(job.relative_to(sweep)) or "."}
        for text in read_overrides(job, metrics):
            key, value = split_override(text)
            row[f"override:{key}"] = value
        if metrics is None:
            row["status"] = "no metrics"
        else:
            row["status"] = "interrupted" if metrics.get("interrupted") else "done"
            row.update({k: v for k, v in flatten(metrics).items() if k.split(".")[0] not in SKIPPED})
        rows.append(row)
    return rows


def columns(rows: list[dict], all_overrides: bool = False, wide: bool = False) -> tuple[list[str], list[str], dict]:
    """(markdown columns, CSV columns, overrides that are the same in every job).  The table
    shows the main metrics (``PREFERRED``) unless ``wide``; the CSV has every column."""
    keys = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    overrides = [k for k in keys if k.startswith("override:")]
    constant = {}
    if not all_overrides and len(rows) > 1:
        for k in overrides:
            values = {row.get(k) for row in rows}
            if len(values) == 1:
                constant[k] = values.pop()
    metric_keys = [k for k in keys if k != "job" and not k.startswith("override:")]
    ordered = [k for k in PREFERRED if k in metric_keys] + sorted(k for k in metric_keys if k not in PREFERRED)
    brief = ordered if wide else [k for k in ordered if k in PREFERRED]
    shown = ["job"] + [k for k in overrides if k not in constant] + brief
    return shown, ["job"] + overrides + ordered, constant


def fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def header(key: str) -> str:
    return key.removeprefix("override:")


def markdown(rows: list[dict], shown: list[str]) -> str:
    lines = ["| " + " | ".join(header(k) for k in shown) + " |", "|" + "|".join(" --- " for _ in shown) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(k)).replace("|", "\\|") for k in shown) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="the sweep folder (multirun/train/<time>)")
    parser.add_argument("--csv", type=Path, default=None, help="CSV output (default SWEEP_DIR/summary.csv)")
    parser.add_argument("--all-overrides", action="store_true", help="also show overrides shared by every job")
    parser.add_argument("--wide", action="store_true", help="show every metric in the table, not only the main ones")
    args = parser.parse_args(argv)
    sweep = args.sweep_dir
    if not sweep.is_dir():
        print(f"error: {sweep} is not a folder", file=sys.stderr)
        return 2
    rows = collect(sweep)
    if not rows:
        print(f"error: no jobs (metrics.json or .hydra/overrides.yaml) under {sweep}", file=sys.stderr)
        return 2
    shown, everything, constant = columns(rows, args.all_overrides, args.wide)
    if constant:
        print("common overrides: " + " ".join(f"{header(k)}={v}" for k, v in constant.items()) + "\n")
    print(markdown(rows, shown))
    out = args.csv or sweep / "summary.csv"
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[header(k) for k in everything])
        writer.writeheader()
        for row in rows:
            writer.writerow({header(k): row.get(k, "") for k in everything})
    print(f"\n{len(rows)} job(s); CSV: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
