"""Render the measured parts of the docs from the JSON beside them (docs/measurements/).

    python tools/render_docs.py          # rewrite them from the JSON
    python tools/render_docs.py --check  # exit 1 if any differs from what the JSON gives

- docs/RESULTS.md (whole) and README.md's results paragraph: results.json (tools/results.py);
- docs/MODEL_CARD.md's data and training tables: dataset.json and training.json
  (tools/train_bundled.py --install);
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

ROOT = Path(__file__).resolve().parents[1]
MEASUREMENTS = ROOT / "docs" / "measurements"
RESULTS_JSON = MEASUREMENTS / "results.json"
RESULTS_MD = ROOT / "docs" / "RESULTS.md"
README = ROOT / "README.md"
MODEL_CARD = ROOT / "docs" / "MODEL_CARD.md"
BENCHMARKS_MD = ROOT / "docs" / "BENCHMARKS.md"
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
    """Issue 13's targets on every case: ``(case, target, value, met)``."""
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
        rate = f"{r['it_per_s']:.2f}" if r.get("it_per_s") else "not recorded"
        lines.append(f"| `{name}` | {r['task']} | {r['model']} | {steps} | {time} | {rate} | {r.get('date', 'not recorded')} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- benchmarks

BENCH_INTRO = """All numbers come from `python tools/benchmark.py` (its command and commit are given with each
run). Models: the bundled `restore-framewise` and `restore` (temporal, one DIS flow a frame), U-Net
ngf 16, depth 5. Clips: a camera pan over a real photo (scikit-image's astronaut), 25 fps, x264 CRF
18. End-to-end = `python -m vid2vid_lite.run CLIP` with its defaults (decode + model input + DIS
flow + model + x264 `medium` encode; `workers=auto`, `batch=auto`, `precision=auto`), the fps the
command prints. Model-only = the generator alone on tensors in memory under the same precision, the
better of one pass on all cores and `run`'s CPU workers (passes in parallel threads). Each repeat
measures model-only fps just before and just after its end-to-end run; the tables give medians over
the repeats, and each ratio is the median of the ratios taken within a repeat (this machine's speed
drifts by tens of percent within minutes). Peak RSS = the `run` process's VmHWM; the 60 s clip is
run once. With `--baseline REV` every end-to-end run is repeated back to back by the code of
revision REV (same weights files): the before/after of a change."""


def _size(key: str) -> str:
    return key.split()[-1].replace("x", "×")


def bench_table(data: dict) -> list[str]:
    lines = ["| model, size | model-only fps: all cores | model-only fps: workers | end-to-end fps | e2e / model "
             "| peak RSS 10 s | peak RSS 60 s | 60 s / 10 s |", "|---" * 8 + "|"]
    for key, r in data.items():
        if isinstance(r, dict) and "e2e_fps" in r:
            kind = "frame-wise" if key.startswith("framewise") else "temporal"
            lines.append(
                f"| {kind} {_size(key)} | {r['model_fps_all_cores']:.1f} | {r['model_fps_workers']:.1f} | {r['e2e_fps']:.1f} "
                f"| {r['e2e_over_model']:.2f} | {r['rss10_mib']:.0f} MiB | {r['rss60_mib']:.0f} MiB | {r['rss60_over_rss10']:.3f} |")
    ratios = [f"{v:.2f} at {_size(k)}" for k, v in data.items() if k.startswith("temporal/framewise")]
    return lines + ["", "Temporal / frame-wise end-to-end time: " + ", ".join(ratios) + "."]


def baseline_table(data: dict) -> list[str]:
    lines = [f"| model, size | end-to-end fps, {data['_commit']} | end-to-end fps, {data['_baseline']} "
             "| ratio (median) | ratio per repeat |", "|---" * 5 + "|"]
    for key, r in data.items():
        if isinstance(r, dict) and "baseline_e2e_fps" in r:
            kind = "frame-wise" if key.startswith("framewise") else "temporal"
            per = ", ".join(f"{v:.3f}" for v in r["e2e_over_baseline_per_repeat"])
            lines.append(f"| {kind} {_size(key)} | {r['e2e_fps']:.1f} | {r['baseline_e2e_fps']:.1f} "
                         f"| {r['e2e_over_baseline']:.3f} | {per} |")
    return lines


def bench_targets(data: dict) -> list[str]:
    """The inference issue's targets, checked on a run."""
    rows = {k: r for k, r in data.items() if isinstance(r, dict) and "e2e_fps" in r}
    rss = max(r["rss60_over_rss10"] for r in rows.values())
    e2e = [r["e2e_over_model"] for r in rows.values()]
    tf = [v for k, v in data.items() if k.startswith("temporal/framewise")]
    verdict = lambda ok: "met" if ok else "**missed**"  # noqa: E731
    return [
        f"- peak RSS at 60 s ≤ 1.1 × at 10 s: {verdict(rss <= 1.1)} (at most {rss:.3f}).",
        f"- temporal end-to-end time ≤ 1.35 × frame-wise: {verdict(max(tf) <= 1.35)} ({', '.join(f'{v:.2f}' for v in tf)}).",
        f"- end-to-end ≥ 85% of model-only: {verdict(min(e2e) >= 0.85)} ({min(e2e):.2f}–{max(e2e):.2f}). On 2 cores the "
        "model alone fills both; decode, the x264 encode, the model input and output copies and the temporal "
        "model's DIS flow take CPU time from it, and the faster the model, the larger their share.",
    ]


def benchmark_runs() -> list[tuple[Path, dict]]:
    """Every CPU benchmark JSON, newest first (by date, then file name)."""
    runs = [(f, json.loads(f.read_text())) for f in MEASUREMENTS.glob("benchmark-*.json")]
    runs = [(f, d) for f, d in runs if "device" not in d]
    return sorted(runs, key=lambda fd: (fd[1]["_date"], fd[0].name), reverse=True)


def benchmarks_markdown(runs: list[tuple[Path, dict]]) -> str:
    latest_file, latest = runs[0]
    lines = ["# Benchmarks", "",
             "<!-- Generated by tools/render_docs.py from docs/measurements/benchmark-*.json: do not edit. -->", "",
             BENCH_INTRO, "", f"## Current: {latest['_date']}, commit {latest.get('_commit', '?')}", "",
             f"`{latest.get('_command', 'python tools/benchmark.py')}` ({latest_file.name}) on {latest['_machine']}, "
             f"precision {latest['_precision']}.", "", *bench_table(latest), "", "Against the targets of the inference "
             "issue:", "", *bench_targets(latest)]
    if "_baseline" in latest:
        lines += ["", f"### Before / after: {latest['_commit']} against {latest['_baseline']}", "",
                  "The same end-to-end runs, each followed at once by the same run with the code of the baseline "
                  "revision (ratio > 1: faster now):", "", *baseline_table(latest)]
    if "demo" in latest:
        per = ", ".join(f"{t:.1f}" for t in latest["demo"]["per_repeat"])
        lines += ["", f"The no-argument demo (`python -m vid2vid_lite.run`, README step 2): {latest['demo']['seconds']:.0f} s "
                  f"(median; per repeat {per} s)."]
    if latest.get("_note"):
        lines += ["", f"Note: {latest['_note']}."]
    lines += ["", "## Earlier runs", ""]
    for f, d in runs[1:]:
        lines += [f"### {d['_date']}, {f.stem.split('-')[-1]} ({d['_precision']})", "", *bench_table(d), ""]
    gpu = sorted(MEASUREMENTS.glob("benchmark-cuda-*.json"))
    lines += ["## GPU", ""]
    if gpu:
        for f in gpu:
            d = json.loads(f.read_text())
            lines += [f"{d['device']}, {d['_date']} ({f.name}): " + ", ".join(
                f"{k} {v:.0f} fps" for k, v in d.items() if not k.startswith("_") and k != "device"), ""]
    else:
        lines += ["Not measured: no GPU has been lent to a session so far. On a lent one, `bash tools/gpu_session.sh` "
                  "runs `python tools/benchmark.py --cuda` (model fps at 512×512 and 1024×512 for batch 1, 4 and 16, "
                  "naming the card) and `python tools/gpu_check.py` (every CUDA path of `run` and `train`).", ""]
    return "\n".join(lines)


def speed_block(runs: list[tuple[Path, dict]]) -> str:
    """README's speed sentence: the current run at 640×360."""
    d = runs[0][1]
    fw, tm = d.get("framewise 640x360"), d.get("temporal 640x360")
    if not fw or not tm:
        return "(no 640×360 measurement yet: `python tools/benchmark.py`)"
    rss = max(r["rss60_mib"] for r in d.values() if isinstance(r, dict) and "rss60_mib" in r)
    return (f"On this project's 2-core CPU ({d['_date']}, {d['_precision']}), `run` with the bundled restore models "
            f"translates 640×360 video at {fw['e2e_fps']:.0f} fps frame-wise and {tm['e2e_fps']:.0f} fps with the "
            f"temporal model, end to end (decode, flow, model, encode), in at most {rss:.0f} MiB of memory for a 60 s "
            "clip (flat with the video's length).")


def demo_block(runs: list[tuple[Path, dict]]) -> str:
    for f, d in runs:
        if "demo" in d:
            return (f"   It took {d['demo']['seconds']:.0f} s on this project's 2-core CPU ({d['_date']}, median of "
                    f"{len(d['demo']['per_repeat'])}, `python tools/benchmark.py --demo`).")
    return "   (not measured yet: `python tools/benchmark.py --demo`)"


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
    runs = benchmark_runs()
    if runs:
        wanted[BENCHMARKS_MD] = benchmarks_markdown(runs) + "\n"
        readme = replace_block(wanted.get(README, README.read_text()), "demo", demo_block(runs))
        wanted[README] = replace_block(readme, "speed", speed_block(runs))
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
