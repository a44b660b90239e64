"""docs/BENCHMARKS.md and README's speed and demo sentences from the benchmark JSON files
(tools/benchmark.py) and the newest soak JSON (tools/soak.py); tools/render_docs.py writes them."""

from __future__ import annotations

import json
from pathlib import Path

MEASUREMENTS = Path(__file__).resolve().parents[1] / "docs" / "measurements"

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


KINDS = {"framewise": "frame-wise", "temporal": "temporal", "deflicker": "deflicker", "upscale2x": "upscale2x (×2 output)"}


def _kind(key: str) -> str:
    return KINDS.get(key.split()[0], key.split()[0])


def _size(key: str) -> str:
    return key.split()[-1].replace("x", "×")


def bench_table(data: dict) -> list[str]:
    lines = ["| model, size | model-only fps: all cores | model-only fps: workers | end-to-end fps | e2e / model "
             "| peak RSS 10 s | peak RSS 60 s | 60 s / 10 s |", "|---" * 8 + "|"]
    for key, r in data.items():
        if isinstance(r, dict) and "e2e_fps" in r:
            lines.append(
                f"| {_kind(key)} {_size(key)} | {r['model_fps_all_cores']:.1f} | {r['model_fps_workers']:.1f} | {r['e2e_fps']:.1f} "
                f"| {r['e2e_over_model']:.2f} | {r['rss10_mib']:.0f} MiB | {r['rss60_mib']:.0f} MiB | {r['rss60_over_rss10']:.3f} |")
    ratios = [f"{v:.2f} at {_size(k)}" for k, v in data.items() if k.startswith("temporal/framewise")]
    lines += ["", "Temporal / frame-wise end-to-end time: " + ", ".join(ratios) + "."]
    deflicker = [f"{v:.2f} at {_size(k)}" for k, v in data.items() if k.startswith("deflicker/temporal")]
    if deflicker:
        lines += ["", "deflicker (with its guide video) / temporal restore end-to-end time: " + ", ".join(deflicker) + "."]
    upscale = [f"{v:.2f} at {_size(k)}" for k, v in data.items() if k.startswith("upscale2x/temporal")]
    if upscale:
        lines += ["", "upscale2x (writing twice the width and height) / temporal restore end-to-end time, at the same "
                  "input size: " + ", ".join(upscale) + "."]
    return lines


def baseline_table(data: dict) -> list[str]:
    lines = [f"| model, size | end-to-end fps, {data['_commit']} | end-to-end fps, {data['_baseline']} "
             "| ratio (median) | ratio per repeat |", "|---" * 5 + "|"]
    for key, r in data.items():
        if isinstance(r, dict) and "baseline_e2e_fps" in r:
            per = ", ".join(f"{v:.3f}" for v in r["e2e_over_baseline_per_repeat"])
            lines.append(f"| {_kind(key)} {_size(key)} | {r['e2e_fps']:.1f} | {r['baseline_e2e_fps']:.1f} "
                         f"| {r['e2e_over_baseline']:.3f} | {per} |")
    return lines


def bench_targets(data: dict) -> list[str]:
    """The inference issue's targets, checked on a run."""
    rows = {k: r for k, r in data.items() if isinstance(r, dict) and "e2e_fps" in r}
    rss = max(r["rss60_over_rss10"] for r in rows.values())
    e2e = [r["e2e_over_model"] for k, r in rows.items() if not k.startswith("upscale2x")]  # upscale2x: its own target
    tf = [v for k, v in data.items() if k.startswith("temporal/framewise")]
    df = [v for k, v in data.items() if k.startswith("deflicker/temporal")]
    up = [v for k, v in data.items() if k.startswith("upscale2x/temporal")]
    verdict = lambda ok: "met" if ok else "**missed**"  # noqa: E731
    return [
        f"- peak RSS at 60 s ≤ 1.1 × at 10 s: {verdict(rss <= 1.1)} (at most {rss:.3f}).",
        f"- temporal end-to-end time ≤ 1.35 × frame-wise: {verdict(max(tf) <= 1.35)} ({', '.join(f'{v:.2f}' for v in tf)}).",
        f"- end-to-end ≥ 85% of model-only: {verdict(min(e2e) >= 0.85)} ({min(e2e):.2f}–{max(e2e):.2f}). On 2 cores the "
        "model alone fills both; decode, the x264 encode, the model input and output copies and the temporal "
        "model's DIS flow take CPU time from it, and the faster the model, the larger their share.",
    ] + ([f"- deflicker at least as fast as the temporal restore model (time ≤ 1.0×): {verdict(max(df) <= 1.0)} "
          f"({', '.join(f'{v:.2f}' for v in df)}): it decodes and converts a second video, the guide, and its "
          "model takes 6 input channels; " + ("a body at half the frame's size (`model.body_scale=2`) pays for that."
                                               if max(df) <= 1.0 else "its model-only speed is lower too (table above).")]
         if df else []) + ([f"- upscale2x end-to-end time ≤ 2.0 × the temporal restore model's at the same input size: "
                            f"{verdict(max(up) <= 2.0)} ({', '.join(f'{v:.2f}' for v in up)}): it encodes four times the "
                            "pixels, and its blend, warp and Lanczos run at the output's size."] if up else [])


def benchmark_runs() -> list[tuple[Path, dict]]:
    """Every CPU benchmark JSON, newest first (by ``_time``, else ``_date``: a run without a time
    counts as that day's first)."""
    runs = [(f, json.loads(f.read_text())) for f in MEASUREMENTS.glob("benchmark-*.json")]
    runs = [(f, d) for f, d in runs if "device" not in d]
    return sorted(runs, key=lambda fd: fd[1].get("_time", fd[1]["_date"]), reverse=True)


def benchmarks_markdown(runs: list[tuple[Path, dict]]) -> str:
    latest_file, latest = runs[0]
    lines = ["# Benchmarks", "",
             "<!-- Generated by tools/render_docs.py from docs/measurements/benchmark-*.json and soak-*.json: do not edit. -->", "",
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
    lines += ["", *soak_markdown(soak_runs())]
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
                  "naming the card) and `python tools/gpu_check.py` (every CUDA path of `run` and `train`); its "
                  "`bench_cuda.json`, saved as docs/measurements/benchmark-cuda-DATE-COMMIT.json, is rendered here.", ""]
    return "\n".join(lines)


SOAK_INTRO = """`python tools/soak.py` translates valid and damaged files in one process, pass after pass, for
`--minutes`, and checks that the process does not leak. Its corpus, made once at the start with
PyAV's encoders: a {size} clip of {frames} frames at {fps} fps in each of {containers}; a folder of
PNG frames; {damaged} damaged copies of the clips (truncated, bits flipped or the header zeroed;
{mutations}). Each file goes through `vid2vid_lite.run.translate` (the config
`python -m vid2vid_lite.run` composes, `device=cpu`) by {models} in turn, into a video or a PNG
folder in turn; a `UserError` is a clean refusal, any other exception a failure. RSS (VmRSS) is
read after every translation; file descriptors, Python and OS threads after the first pass (once
the lazy imports and thread pools exist) and at the end; a temporary file is any entry of the work
folder that is not an input or a finished output, and any entry of the process's temporary folder
(`TMPDIR`, pointed into the work folder)."""


def soak_runs() -> list[tuple[Path, dict]]:
    """Every soak JSON (tools/soak.py), newest first."""
    runs = [(f, json.loads(f.read_text())) for f in MEASUREMENTS.glob("soak-*.json")]
    return sorted(runs, key=lambda fd: fd[1].get("_time", fd[1]["_date"]), reverse=True)


def soak_markdown(runs: list[tuple[Path, dict]]) -> list[str]:
    """BENCHMARKS.md's soak section: the newest soak run's numbers and targets."""
    lines = ["## Soak: leaks over a long run", ""]
    if not runs:
        return lines + ["No soak has been recorded yet. `python tools/soak.py` (20 minutes by default) translates valid "
                        "and damaged files in one process and checks its memory, file descriptors, threads and "
                        "temporary files; it writes docs/measurements/soak-DATE-COMMIT.json, which is rendered here."]
    f, d = runs[0]
    c, r, h0, h1 = d["corpus"], d["rss_mib"], d["handles_start"], d["handles_end"]
    codecs = c.get("codecs", {})
    containers = ", ".join(name.split(".")[-1].upper() + (f" ({codecs[name]})" if name in codecs else "")
                           for name in c["valid"] if "." in name)
    models = ("tiny untrained temporal (`batch=2`) and frame-wise models" if d.get("tiny") else
              f"the bundled `{d['models']['temporal']}` (temporal, `batch=2`) and `{d['models']['framewise']}`")
    intro = " ".join(SOAK_INTRO.split("\n")).format(  # one line: the values are of any length
        size=c["size"].replace("x", "×"), frames=c["frames"], fps=c["fps"], containers=containers,
        damaged=len(c["damaged"]), mutations=c["mutations"], models=models)
    verdict = lambda ok: "met" if ok else "**missed**"  # noqa: E731
    lines += [intro, "", f"`{d['_command']}` ({f.name}), {d['_date']}, commit {d['_commit']}, on {d['_machine']}: "
              f"{d['passes']} passes, {d['translations']} translations in {d['seconds'] / 60:.1f} min; "
              f"{d['refusals']} refused with a `UserError`, {d['failures']} failed.", "",
              "| | first pass | last pass |", "|---|---|---|",
              f"| RSS, median of the pass | {r['first_pass_median']:.1f} MiB | {r['last_pass_median']:.1f} MiB "
              f"({r['growth_pct']:+.2f} %) |",
              f"| peak RSS (VmHWM) | | {r['peak']:.1f} MiB |",
              f"| file descriptors, after the pass | {h0['fds']} | {h1['fds']} |",
              f"| threads after the pass: Python / OS | {h0['threads']} / {h0['os_threads']} | {h1['threads']} / "
              f"{h1['os_threads']} |",
              f"| temporary files left | | {len(d['temporary_files_left'])} |", "",
              "Targets: " + "; ".join(f"{name}: {verdict(ok)}" for name, ok in d["targets"].items()) + "."]
    lines += [f"- failure: {e['type']}: {e['message']} ({e['source']}, {e['count']}×)" for e in d["failure_examples"]]
    lines += [f"- left: `{name}`" for name in d["temporary_files_left"][:10]]
    return lines


def speed_block(runs: list[tuple[Path, dict]]) -> str:
    """README's speed sentence: the current run at 640×360."""
    d = runs[0][1]
    fw, tm = d.get("framewise 640x360"), d.get("temporal 640x360")
    if not fw or not tm:
        return "(no 640×360 measurement yet: `python tools/benchmark.py`)"
    rss = max(fw["rss60_mib"], tm["rss60_mib"])
    df = d.get("deflicker 640x360")
    deflicker = (f" The `deflicker` model, which decodes the guide video as well, runs at {df['e2e_fps']:.0f} fps."
                 if df else "")
    up = d.get("upscale2x 640x360")
    deflicker += (f" The temporal `upscale2x` model writes 1280×720 from 640×360 input at {up['e2e_fps']:.0f} fps "
                  f"({d['upscale2x/temporal e2e time 640x360']:.2f}× the temporal restore model's time), in at most "
                  f"{up['rss60_mib']:.0f} MiB for a 60 s clip." if up else "")
    return (f"On this project's 2-core CPU ({d['_date']}, {d['_precision']}), `run` with the bundled restore models "
            f"translates 640×360 video at {fw['e2e_fps']:.0f} fps frame-wise and {tm['e2e_fps']:.0f} fps with the "
            f"temporal model, end to end (decode, flow, model, encode), in at most {rss:.0f} MiB of memory for a 60 s "
            f"clip (flat with the video's length).{deflicker}")


def demo_block(runs: list[tuple[Path, dict]]) -> str:
    for f, d in runs:
        if "demo" in d:
            return (f"   It took {d['demo']['seconds']:.0f} s on this project's 2-core CPU ({d['_date']}, median of "
                    f"{len(d['demo']['per_repeat'])}, `python tools/benchmark.py --demo`).")
    return "   (not measured yet: `python tools/benchmark.py --demo`)"
