"""Render the measured parts of the docs from the JSON beside them (docs/measurements/).

    python tools/render_docs.py          # rewrite them from the JSON
    python tools/render_docs.py --check  # exit 1 if any differs from what the JSON gives

- docs/RESULTS.md (whole) and README.md's results, deflicker and upscale paragraphs: results.json
  (tools/results.py);
- docs/MODEL_CARD.md's data and training tables: dataset.json and training.json
  (tools/train_bundled.py --install);
- docs/TRAINING.md's table of the upscale2x recipes tried: val_upscale.json (tools/results.py
  --set val --sections upscale --label NAME);
- docs/BENCHMARKS.md (whole) and README.md's demo time: benchmark-DATE-COMMIT.json
  (tools/benchmark.py; the newest is the current one, the others are history).

A generated part of a document sits between ``<!-- NAME:start ... -->`` and ``<!-- NAME:end -->``
lines.  tools/results.py and tools/train_bundled.py call this; tests/test_docs.py runs ``--check``,
so a number typed into a generated part by hand, or a JSON changed without rendering, fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import docs_deflicker
import docs_upscale
from docs_benchmarks import benchmark_runs, benchmarks_markdown, demo_block, speed_block

ROOT = Path(__file__).resolve().parents[1]
MEASUREMENTS = ROOT / "docs" / "measurements"
RESULTS_JSON = MEASUREMENTS / "results.json"
RESULTS_MD = ROOT / "docs" / "RESULTS.md"
README = ROOT / "README.md"
MODEL_CARD = ROOT / "docs" / "MODEL_CARD.md"
BENCHMARKS_MD = ROOT / "docs" / "BENCHMARKS.md"
TRAINING_MD = ROOT / "docs" / "TRAINING.md"
COLUMNS = ("psnr", "ssim", "ewarp", "ewarp_ref", "tof", "flicker")
ROW_ORDER = ("input", "classical", "frame-wise", "temporal")


def _cell(metric: str, value: float) -> str:
    return f"{value:.5f}" if metric.startswith("ewarp") else f"{value:.3f}"


def table(rows: dict, gain_over: str | None = "input") -> list[str]:
    """A markdown table of ``rows`` (label -> metrics), with PSNR gain over ``gain_over``."""
    head = ["", *COLUMNS] + ([f"Δpsnr vs {gain_over}"] if gain_over else [])
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for label in [r for r in ROW_ORDER if r in rows] + [r for r in rows if r not in ROW_ORDER]:
        metrics = rows[label]
        name = f"classical ({metrics['filter']})" if label == "classical" else label
        cells = [_cell(m, metrics[m]) for m in COLUMNS]
        if gain_over:
            cells.append(f"{metrics['psnr'] - rows[gain_over]['psnr']:+.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def targets(data: dict) -> list[tuple[str, str, float, bool]]:
    """The restore model's targets on every case: ``(case, target, value, met)``."""
    s, out = data["sections"], []
    for clip, cases in s["restore"].items():
        for case, r in cases.items():
            tag = f"{clip}, {case}"
            t, f, i = r["temporal"], r["frame-wise"], r["input"]
            if case.startswith("x264"):  # the targets are for CRF 35-40; the real clip is reported too
                out.append((tag, "temporal ≥ input + 0.5 dB", t["psnr"] - i["psnr"], t["psnr"] - i["psnr"] >= 0.5))
            else:
                out.append((tag, "temporal ≥ input (real clip; reported)", t["psnr"] - i["psnr"], t["psnr"] >= i["psnr"]))
            if "classical" in r:
                c = r["classical"]
                out.append((tag, "temporal > best classical filter", t["psnr"] - c["psnr"], t["psnr"] > c["psnr"]))
            out.append((tag, "temporal ≥ frame-wise PSNR", t["psnr"] - f["psnr"], t["psnr"] >= f["psnr"]))
            out.append((tag, "temporal ewarp ≤ 0.8× frame-wise", t["ewarp"] / f["ewarp"], t["ewarp"] <= 0.8 * f["ewarp"]))
    for clip, cases in s.get("clean", {}).items():
        for case, r in cases.items():
            if case.startswith("x264"):
                d = r["temporal"]["psnr"] - r["input"]["psnr"]
                out.append((f"{clip}, clean ({case})", "temporal loses ≤ 0.1 dB", d, d >= -0.1))
    for clip, r in s.get("colorize", {}).items():
        t, f = r["temporal"], r["frame-wise"]
        out.append((f"{clip}, colorize", "temporal ≥ frame-wise − 0.1 dB", t["psnr"] - f["psnr"], t["psnr"] - f["psnr"] >= -0.1))
        out.append((f"{clip}, colorize", "temporal ewarp ≤ 0.85× frame-wise", t["ewarp"] / f["ewarp"], t["ewarp"] <= 0.85 * f["ewarp"]))
    return out


def _value(target: str, value: float) -> str:
    return f"{value:.2f}×" if "×" in target else f"{value:+.3f} dB"


def summary(data: dict) -> dict[str, float]:
    """The headline numbers (README and the top of RESULTS.md)."""
    rs = [r for cases in data["sections"]["restore"].values() for c, r in cases.items() if c.startswith("x264")]
    gains = [r["temporal"]["psnr"] - r["input"]["psnr"] for r in rs]
    fw_gains = [r["frame-wise"]["psnr"] - r["input"]["psnr"] for r in rs]
    over_classical = [r["temporal"]["psnr"] - r["classical"]["psnr"] for r in rs if "classical" in r]
    ewarp = [r["temporal"]["ewarp"] / r["frame-wise"]["ewarp"] for r in rs]
    return {
        "cases": len(rs), "gain_min": min(gains), "gain_max": max(gains), "gain_mean": sum(gains) / len(gains),
        "fw_gain_mean": sum(fw_gains) / len(fw_gains),
        "over_classical_min": min(over_classical) if over_classical else float("nan"),
        "over_classical_max": max(over_classical) if over_classical else float("nan"),
        "below_classical": sum(d < 0 for d in over_classical),
        "worse_than_input": sum(g < 0 for g in gains),
        "ewarp_ratio_min": min(ewarp), "ewarp_ratio_max": max(ewarp),
    }


def experiments_table(experiments: dict) -> list[str]:
    """What was tried, measured on the validation clips (tools/results.py --set val --label)."""
    lines = ["| restore model (validation clips) | mean Δpsnr vs input | min | max |", "|---|---|---|---|"]
    for label, e in experiments.items():
        gains = [g["temporal"] for g in e["gains_db"].values()]
        lines.append(f"| {label} | {sum(gains) / len(gains):+.3f} dB | {min(gains):+.3f} | {max(gains):+.3f} |")
    return lines


def results_markdown(data: dict, experiments: dict | None = None) -> str:
    s = summary(data)
    checks = targets(data)
    missed = [c for c in checks if not c[3]]
    lines = [
        "# Results",
        "",
        "<!-- Generated by tools/results.py (tools/render_docs.py) from docs/measurements/results.json: do not edit. -->",
        "",
        f"Measured {data['date']} with `python tools/results.py` on the held-out clips of",
        "`tools/build_dataset.py` (fixed before any training; no training or model choice used them):",
        ", ".join(f"`{f}`" for f in data["clips"].values()) + ".",
        f"The restore inputs are each reference re-encoded by x264 at CRF {' and '.join(map(str, data['crfs']))}",
        "(preset medium); carphone also comes with a real compressed version. Every model runs through",
        "`python -m vid2vid_lite.run` in fp32 into PNG frames. `classical` is the best of several FFmpeg",
        "filters (deblock, nlmeans, dctdnoiz, fftdnoiz, atadenoise) for that input, picked by PSNR against",
        "the reference, which favours it. `ewarp_ref` is the reference's own warping error.",
        "",
        f"Temporal restore over the degraded input, {s['cases']} x264 cases: {s['gain_mean']:+.3f} dB on average "
        f"({s['gain_min']:+.3f} to {s['gain_max']:+.3f}; worse than the input on {s['worse_than_input']}); "
        f"frame-wise {s['fw_gain_mean']:+.3f} dB. Against the best classical filter: "
        f"{s['over_classical_min']:+.3f} to {s['over_classical_max']:+.3f} dB (below it on {s['below_classical']}). Warping error "
        f"{s['ewarp_ratio_min']:.2f}–{s['ewarp_ratio_max']:.2f}× the frame-wise model's.",
        "",
        f"## Targets: {len(checks) - len(missed)} of {len(checks)} met",
        "",
        "| case | target | value | |",
        "|---|---|---|---|",
    ]
    lines += [f"| {case} | {target} | {_value(target, v)} | {'met' if ok else '**MISSED**'} |" for case, target, v, ok in checks]
    lines += ["", "## restore", ""]
    for clip, cases in data["sections"]["restore"].items():
        for case, rows in cases.items():
            lines += [f"### {clip}, {case}", "", *table(rows), ""]
    if data["sections"].get("clean"):
        lines += ["## restore on clean video", "",
                  f"`x264 CRF {data['clean_crf']}`: the reference encoded visually losslessly (clean video as",
                  "stored); `the reference itself`: the decoded reference fed as it is.", ""]
        for clip, cases in data["sections"]["clean"].items():
            for case, rows in cases.items():
                lines += [f"### {clip}, {case}", "", *table(rows), ""]
    if data["sections"].get("colorize"):
        lines += ["## colorize", "", "`input` is the gray version the model sees.", ""]
        for clip, rows in data["sections"]["colorize"].items():
            lines += [f"### {clip}", "", *table(rows, gain_over="frame-wise"), ""]
    if experiments:
        lines += ["## What was tried", "",
                  "Model choices were made on the validation clips of `tools/build_dataset.py` (a band-recording",
                  "chunk and camera moves over two photos, at x264 CRF 35 and 40), never on the held-out ones:",
                  "`python tools/results.py --set val --model restore=RUN_DIR --label NAME` records a row.", "",
                  *experiments_table(experiments), ""]
    if data["sections"].get("deflicker"):
        lines += docs_deflicker.markdown(data["sections"]["deflicker"])
    if data["sections"].get("upscale"):
        lines += docs_upscale.markdown(data["sections"]["upscale"])
    return "\n".join(lines).rstrip() + "\n"


def readme_block(data: dict) -> str:
    s = summary(data)
    checks = targets(data)
    met = sum(ok for *_, ok in checks)
    return "\n".join([
        f"On {s['cases']} heavily compressed inputs (x264 CRF {' and '.join(map(str, data['crfs']))}) of real clips that no",
        f"training or model choice used, the bundled temporal restore model gains {s['gain_mean']:+.3f} dB of PSNR",
        f"on average ({s['gain_min']:+.3f} to {s['gain_max']:+.3f}; worse than the input on {s['worse_than_input']}"
        f" of them; the frame-wise model {s['fw_gain_mean']:+.3f}), {s['over_classical_min']:+.3f} to "
        f"{s['over_classical_max']:+.3f} dB against the best classical FFmpeg filter for each input (below it on "
        f"{s['below_classical']}), with {s['ewarp_ratio_min']:.2f}–{s['ewarp_ratio_max']:.2f}× the frame-wise model's",
        f"warping error. The gains are small: {met} of {len(checks)} targets are met. Every case, the clean-input",
        "check, colorize and what was tried:",
    ])


def dataset_block(data: dict) -> str:
    """MODEL_CARD's data table from dataset.json (tools/build_dataset.py's manifest)."""
    lines = ["| split | clips from | clips | frames | sizes |", "|---|---|---|---|---|"]
    for split, families in data["splits"].items():
        for family, f in families.items():
            lines.append(f"| {split} | {data['sources'][family]} | {f['clips']} | {f['frames']} | {', '.join(f['sizes'])} |")
    return "\n".join(lines)


def training_block(data: dict) -> str:
    """MODEL_CARD's training table from training.json (tools/train_bundled.py --install)."""
    lines = ["| model | task | stage | steps | time | it/s | date |", "|---|---|---|---|---|---|---|"]
    for name, r in data.items():
        steps = f"{r['init_step']} (frame-wise) + {r['steps']}" if r.get("init_step") else str(r["steps"])
        time = f"{r['time_s'] / 60:.1f} min" if r.get("time_s") else "not recorded"
        time += " (after a resume: the part before it is not timed)" if r.get("resumed") else ""
        rate = f"{r['it_per_s']:.2f}" if r.get("it_per_s") else "not recorded"
        lines.append(f"| `{name}` | {r['task']} | {r['model']} | {steps} | {time} | {rate} | {r.get('date', 'not recorded')} |")
    return "\n".join(lines)


def replace_block(text: str, name: str, content: str) -> str:
    """``text`` with the lines between its ``name`` start and end markers replaced; the end
    marker keeps the start marker's indentation (a block inside a list item stays in it)."""
    start, end = f"<!-- {name}:start", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise SystemExit(f"error: the {name} markers are missing")
    head, rest = text.split(start, 1)
    marker_line, _, _ = rest.partition("\n")
    indent = head.rsplit("\n", 1)[-1]
    indent = indent if not indent.strip() else ""
    return f"{head}{start}{marker_line}\n{content}\n{indent}{end}{rest.split(end, 1)[1]}"


def wanted_docs() -> dict[Path, str]:
    """Every generated document (or document with generated parts) as the JSON makes it."""
    wanted = {}
    if RESULTS_JSON.exists():
        results = json.loads(RESULTS_JSON.read_text())
        experiments_json = MEASUREMENTS / "val_experiments.json"
        experiments = json.loads(experiments_json.read_text()) if experiments_json.exists() else None
        wanted[RESULTS_MD] = results_markdown(results, experiments)
        wanted[README] = replace_block(README.read_text(), "results", readme_block(results))
        if results["sections"].get("deflicker"):
            wanted[README] = replace_block(wanted[README], "deflicker", docs_deflicker.readme_block(results["sections"]["deflicker"]))
        if results["sections"].get("upscale"):
            wanted[README] = replace_block(wanted[README], "upscale", docs_upscale.readme_block(results["sections"]["upscale"]))
    runs = benchmark_runs()
    if runs:
        wanted[BENCHMARKS_MD] = benchmarks_markdown(runs) + "\n"
        readme = replace_block(wanted.get(README, README.read_text()), "demo", demo_block(runs))
        wanted[README] = replace_block(readme, "speed", speed_block(runs))
    tried = MEASUREMENTS / "val_upscale.json"
    if tried.exists():
        wanted[TRAINING_MD] = replace_block(TRAINING_MD.read_text(), "upscale-tried",
                                            docs_upscale.tried_block(json.loads(tried.read_text())))
    card = MODEL_CARD.read_text()
    for name, render in (("dataset", dataset_block), ("training", training_block)):
        source = MEASUREMENTS / f"{name}.json"
        if source.exists():
            card = replace_block(card, name, render(json.loads(source.read_text())))
    wanted[MODEL_CARD] = card
    return wanted


def render(check: bool = False) -> bool:
    """Write (or, with ``check``, only compare) the generated docs; True if all matched."""
    same = True
    for path, text in wanted_docs().items():
        if path.read_text() == text:
            continue
        same = False
        if check:
            print(f"{path.relative_to(ROOT)} differs from what docs/measurements/ gives: "
                  "run python tools/render_docs.py", file=sys.stderr)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    ok = render(check=args.check)
    sys.exit(0 if ok or not args.check else 1)


if __name__ == "__main__":
    main()
