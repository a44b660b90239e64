"""Soak test: translate valid and damaged files in one process for a long time, and check that it
does not leak memory, file descriptors, threads or temporary files.

    python tools/soak.py [--minutes 20] [--passes N] [--seed 0] [--tiny] [--json FILE] [--keep]

The corpus, made once at the start (PyAV's encoders, 96x64, 36 frames at 25 fps) in a fresh work
folder: a clip in each of MP4 (H.264 + AAC), Matroska (H.264 + Opus), AVI (MPEG-4 + PCM), WebM
(VP9 + Opus), MPEG-PS (MPEG-1 + MP2) and ASF (MS-MPEG-4 + WMA), a folder of PNG frames, and
damaged copies of each clip (truncated, bits flipped or the header zeroed), made once from
``--seed``: every pass does the same work, so that its numbers compare with the first pass's.

A pass is one round over the corpus.  Each file goes through ``vid2vid_lite.run.translate`` in this
process (the config ``python -m vid2vid_lite.run`` composes, device=cpu, progress=false), by the
bundled ``restore`` (temporal, batch=2) and ``restore-framewise`` models in turn (``--tiny``:
tiny untrained models of both kinds), into a video or a PNG-folder output in turn (every third
damaged file with ``on_error=keep``).  A :class:`~vid2vid_lite.errors.UserError` is a clean
refusal; any other exception (or a translation over 120 s) is a failure, recorded, and the soak
goes on.  After every translation it reads the resident memory (VmRSS) and looks for temporary
files: every entry of the work folder that is not a corpus file or a finished output (unfinished
outputs under any temporary name, hidden or not) and every entry of the process's temporary
folder (``TMPDIR`` and Python's ``tempfile`` point into the work folder during the soak).  After
the first pass (once lazy imports and thread pools exist) and at the end it counts the open file
descriptors, Python's threads and the OS threads of the process.

It prints one line a pass and a table, writes the JSON (default
docs/measurements/soak-DATE-COMMIT.json; tools/render_docs.py puts the newest in
docs/BENCHMARKS.md) and exits 1 when a target is missed: RSS (median of the last pass) more
than 5 % above the first pass's, more file descriptors or threads at the end than after the first
pass, any temporary file left, any failure.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from datetime import date, datetime, timezone
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

SIZE = (64, 96)  # height, width
FRAMES, FPS = 36, 25
#: name -> (video encoder, audio encoder, muxer, audio rate, video options)
CLIPS = {
    "clip.mp4": ("libx264", "aac", "mp4", 44100, {}),
    "clip.mkv": ("libx264", "libopus", "matroska", 48000, {}),
    "clip.avi": ("mpeg4", "pcm_s16le", "avi", 44100, {}),
    "clip.webm": ("libvpx-vp9", "libopus", "webm", 48000, {"deadline": "realtime", "cpu-used": "8"}),
    "clip.mpg": ("mpeg1video", "mp2", "mpeg", 44100, {"bf": "2", "g": "12"}),
    "clip.asf": ("msmpeg4", "wmav2", "asf", 44100, {}),
}
MUTATIONS_PER_CLIP = 2
TIMEOUT_S = 120  # one translation longer than this is a failure (a hang)
RSS_GROWTH_LIMIT_PCT = 5.0


# -- the corpus ---------------------------------------------------------------------------------
def moving_pattern(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random texture moving right by 2 px a frame: ``(T, H, W, 3)`` uint8."""
    import cv2

    rng = np.random.default_rng(seed)
    big = cv2.resize(rng.random((height // 8 + 2, (width + 2 * frames) // 8 + 2, 3)),
                     (width + 2 * frames + 16, height + 16), interpolation=cv2.INTER_CUBIC)
    return (np.clip(np.stack([big[:height, 2 * t: 2 * t + width] for t in range(frames)]), 0, 1) * 255).astype(np.uint8)


def make_media(path: Path, video: str, audio: str | None, muxer: str, frames: np.ndarray, audio_rate: int = 44100,
               options: dict | None = None) -> Path:
    """A clip in any container FFmpeg writes, with a 440 Hz tone as its sound."""
    with av.open(str(path), "w", format=muxer) as container:
        stream = container.add_stream(video, rate=FPS)
        stream.height, stream.width = frames.shape[1:3]
        formats = [f.name for f in stream.codec_context.codec.video_formats or []]
        stream.pix_fmt = "yuv420p" if "yuv420p" in formats or not formats else formats[0]
        stream.options = options or {}
        sound = None
        if audio:
            sound = container.add_stream(audio, rate=audio_rate)
            sound.layout = "stereo"
            if sound.codec_context.codec.audio_formats:
                sound.format = sound.codec_context.codec.audio_formats[0].name
            sound.bit_rate = 64000
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if sound is not None:
            ctx = sound.codec_context
            resampler = av.AudioResampler(format=ctx.format, layout=ctx.layout, rate=audio_rate,
                                          frame_size=ctx.frame_size or 1024)
            n = len(frames) * audio_rate // FPS
            wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / audio_rate) * 32767).astype(np.int16)
            for start in [*range(0, n, 1024), None]:
                chunk = None
                if start is not None:
                    chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[None, start: start + 1024]),
                                                       format="s16", layout="mono")
                    chunk.sample_rate, chunk.pts, chunk.time_base = audio_rate, start, Fraction(1, audio_rate)
                for resampled in resampler.resample(chunk):
                    container.mux(sound.encode(resampled))
            container.mux(sound.encode(None))
    return path


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """A damaged copy: truncated, some bits flipped, or the header zeroed (and which)."""
    kind = rng.choice(("truncated", "flipped", "header"))
    if kind == "truncated":
        return kind, data[: rng.randrange(1, len(data))]
    out = bytearray(data)
    if kind == "flipped":
        for _ in range(rng.randint(1, 40)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    else:
        n = rng.choice((16, 64, 256, 1024))
        out[:n] = bytes(min(n, len(out)))
    return kind, bytes(out)


def make_corpus(folder: Path, seed: int) -> list[Path]:
    """The valid clips, a frame folder, and ``MUTATIONS_PER_CLIP`` damaged copies of each clip."""
    from vid2vid_lite.io import write_video

    folder.mkdir(parents=True)
    frames = moving_pattern(FRAMES, *SIZE, seed=seed)
    valid = [make_media(folder / name, v, a, m, frames, rate, opts) for name, (v, a, m, rate, opts) in CLIPS.items()]
    valid.append(write_video(folder / "frames", frames))  # a folder of PNGs
    rng = random.Random(seed)
    damaged = []
    for clip in valid[: len(CLIPS)]:
        for i in range(MUTATIONS_PER_CLIP):
            kind, data = mutate(clip.read_bytes(), rng)
            damaged.append(folder / f"{clip.stem}-{kind}{i}{clip.suffix}")
            damaged[-1].write_bytes(data)
    return valid + damaged


def tiny_checkpoints(folder: Path) -> dict[str, str]:
    """Tiny untrained restore models of both kinds (the plumbing does not care about the weights);
    the temporal one, as the bundled restore, takes no validity map."""
    import torch

    from vid2vid_lite.checkpoint import save_generator
    from vid2vid_lite.nn import build_generator

    torch.manual_seed(0)
    out = {}
    for name in ("framewise", "temporal"):
        extra = {"use_validity": False} if name == "temporal" else {}
        model = build_generator({"name": name, "ngf": 8, "depth": 3, "residual": True, **extra})
        out[name] = str(save_generator(folder / f"{name}.safetensors", model, {"generator": model.config, "task": "restore"}))
    return out


# -- what the process holds -------------------------------------------------------------------
def proc_status() -> dict[str, int]:
    """VmRSS and VmHWM (kB) and Threads of this process, from /proc/self/status."""
    text = Path("/proc/self/status").read_text()
    return {key: int(re.search(rf"^{key}:\s+(\d+)", text, re.M).group(1)) for key in ("VmRSS", "VmHWM", "Threads")}


def rss_mib() -> float:
    return proc_status()["VmRSS"] / 1024


def handles() -> dict[str, int]:
    """Open file descriptors, Python threads and OS threads of this process."""
    gc.collect()  # what only a garbage collection would close is not a leak
    return {"fds": len(os.listdir("/proc/self/fd")), "threads": threading.active_count(),
            "os_threads": proc_status()["Threads"]}


def settled_handles(limit: dict[str, int], seconds: float = 5.0) -> dict[str, int]:
    """:func:`handles`, polled for up to ``seconds`` while any is above ``limit`` (a worker
    thread that was told to stop may take a moment to exit)."""
    deadline = time.monotonic() + seconds
    now = handles()
    while any(now[k] > limit[k] for k in limit) and time.monotonic() < deadline:
        time.sleep(0.2)
        now = handles()
    return now


def stray_entries(folder: Path, keep: set[Path], folders: set[Path] = frozenset()) -> list[str]:
    """Every entry under ``folder`` that is not in ``keep`` (finished files or folders: what is
    inside them is theirs), inside one of them, one of ``folders`` (folders whose entries are
    checked) or on the way to one of these: the temporary files and folders left behind, hidden
    or not (a left folder's content is not listed again)."""
    ways = {parent for entry in keep | set(folders) for parent in entry.parents}
    stray: list[Path] = []
    for entry in sorted(folder.rglob("*")):
        if entry in keep or entry in folders or entry in ways:
            continue
        if any(parent in keep or parent in stray for parent in entry.parents):
            continue
        stray.append(entry)
    return [str(entry.relative_to(folder)) for entry in stray]


def rss_growth(first_pass: list[float], last_pass: list[float]) -> dict[str, float]:
    """Median RSS (MiB) of the first and the last pass and the growth between them in %."""
    first, last = statistics.median(first_pass), statistics.median(last_pass)
    return {"first_pass_median": first, "last_pass_median": last, "growth_pct": 100 * (last - first) / first}


def targets(result: dict) -> dict[str, bool]:
    """The soak's targets, each True when met."""
    h0, h1 = result["handles_start"], result["handles_end"]
    return {
        f"RSS growth ≤ {RSS_GROWTH_LIMIT_PCT:g} %": result["rss_mib"]["growth_pct"] <= RSS_GROWTH_LIMIT_PCT,
        "no leaked file descriptor": h1["fds"] <= h0["fds"],
        "no leaked thread": h1["threads"] <= h0["threads"] and h1["os_threads"] <= h0["os_threads"],
        "no temporary file left": not result["temporary_files_left"],
        "no failure": result["failures"] == 0,
    }


# -- the soak ---------------------------------------------------------------------------------
class TranslationTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise TranslationTimeout(f"took over {TIMEOUT_S} s")


def translate_one(base_cfg, source: Path, output: Path, weights: str, **options) -> Path:
    """``python -m vid2vid_lite.run SOURCE output=OUTPUT weights=WEIGHTS ...`` in this process,
    its printing swallowed."""
    from omegaconf import OmegaConf

    from vid2vid_lite.run import translate

    cfg = OmegaConf.merge(base_cfg, {"input": str(source), "output": str(output), "weights": weights, **options})
    signal.alarm(TIMEOUT_S)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return translate(cfg)
    finally:
        signal.alarm(0)


def jobs(corpus: list[Path], damaged: set[Path], out: Path, models: dict[str, str]) -> list[dict]:
    """One pass's translations: the models and the output kinds in turn (every third damaged
    file with on_error=keep)."""
    plan = []
    for k, source in enumerate(corpus):
        temporal = k % 2 == 0
        name = f"{k:02d}-{source.name.replace('.', '_')}"
        options = {"weights": models["temporal" if temporal else "framewise"]}
        if temporal:
            options["batch"] = 2
        if (k // 2) % 2:
            output = out / f"{name}_frames"
        else:
            output = out / f"{name}.{'mkv' if source.suffix == '.avi' else 'mp4'}"  # PCM audio: copied into Matroska
        if source in damaged and k % 3 == 0:
            options["on_error"] = "keep"
        plan.append({"source": source, "output": output, **options})
    return plan


def soak(work: Path, minutes: float, seed: int, tiny: bool, passes: int | None = None) -> dict:
    from omegaconf import OmegaConf

    import vid2vid_lite
    from vid2vid_lite.engine.allocator import keep_freed_memory
    from vid2vid_lite.errors import UserError

    warnings.filterwarnings("ignore", module="torch")  # as run's main does
    keep_freed_memory()
    process_tmp = work / "tmp"  # the process's temporary folder during the soak
    process_tmp.mkdir()
    saved_tmp = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = tempfile.tempdir = str(process_tmp)
    corpus = make_corpus(work / "corpus", seed)
    damaged = set(corpus[len(CLIPS) + 1:])
    tiny_models = tiny_checkpoints(work) if tiny else {}
    models = {"temporal": tiny_models.get("temporal", "restore"),
              "framewise": tiny_models.get("framewise", "restore-framewise")}
    model_files = {Path(m) for m in models.values() if Path(m).is_absolute()}
    out = work / "out"
    out.mkdir()
    base_cfg = OmegaConf.load(Path(vid2vid_lite.__file__).parent / "conf" / "run.yaml")
    for key in ("defaults", "hydra"):
        base_cfg.pop(key)
    base_cfg.merge_with({"device": "cpu", "progress": False})
    plan = jobs(corpus, damaged, out, models)
    finished: set[Path] = set()
    stray: set[str] = set()
    counts = {"translations": 0, "refusals": 0, "failures": 0}
    failures: dict[tuple[str, str], dict] = {}
    rss_passes: list[list[float]] = []
    pass_seconds: list[float] = []
    handles_start = None
    previous = signal.signal(signal.SIGALRM, _alarm)
    start = time.monotonic()
    try:
        while True:
            t0, rss = time.monotonic(), []
            refused = failed = 0
            for job in plan:
                options = {k: v for k, v in job.items() if k not in ("source", "output")}
                counts["translations"] += 1
                try:
                    finished.add(translate_one(base_cfg, job["source"], job["output"], **options))
                except UserError:
                    counts["refusals"] += 1
                    refused += 1
                except Exception as err:  # noqa: BLE001 - every other exception is a failure, recorded
                    counts["failures"] += 1
                    failed += 1
                    key = (type(err).__name__, str(err).splitlines()[0][:300] if str(err) else "")
                    failures.setdefault(key, {"type": key[0], "message": key[1], "source": job["source"].name,
                                              "count": 0})
                    failures[key]["count"] += 1
                gc.collect()
                rss.append(rss_mib())
                stray.update(stray_entries(work, set(corpus) | finished | model_files,
                                           {work / "corpus", out, process_tmp}))
            rss_passes.append(rss)
            pass_seconds.append(time.monotonic() - t0)
            if handles_start is None:
                handles_start = handles()
            n = len(rss_passes)
            print(f"pass {n}: {len(plan)} translations ({refused} refused, {failed} failed) in {pass_seconds[-1]:.1f} s, "
                  f"RSS median {statistics.median(rss):.0f} MiB (first pass {statistics.median(rss_passes[0]):.0f}), "
                  f"peak {proc_status()['VmHWM'] / 1024:.0f} MiB, temporary files {len(stray)}", flush=True)
            done = n >= passes if passes else (time.monotonic() - start) / 60 >= minutes and n >= 2
            if done:
                break
    finally:
        signal.signal(signal.SIGALRM, previous)
        tempfile.tempdir = saved_tmp[1]
        if saved_tmp[0] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_tmp[0]
    handles_end = settled_handles(handles_start)
    return {
        **counts,
        "passes": len(rss_passes),
        "seconds": round(time.monotonic() - start, 1),
        "pass_seconds": [round(s, 2) for s in pass_seconds],
        "failure_examples": sorted(failures.values(), key=lambda f: -f["count"])[:20],
        "rss_mib": {**rss_growth(rss_passes[0], rss_passes[-1]), "peak": proc_status()["VmHWM"] / 1024,
                    "per_pass_median": [round(statistics.median(r), 1) for r in rss_passes]},
        "handles_start": handles_start,
        "handles_end": handles_end,
        "temporary_files_left": sorted(stray),
        "corpus": {"valid": [p.name for p in corpus if p not in damaged], "damaged": [p.name for p in corpus if p in damaged],
                   "codecs": {name: f"{v} + {a}" for name, (v, a, *_) in CLIPS.items()},
                   "size": f"{SIZE[1]}x{SIZE[0]}", "frames": FRAMES, "fps": FPS,
                   "mutations": f"made once from seed {seed}: every pass translates the same files"},
        "models": {k: Path(v).name if tiny else v for k, v in models.items()},
        "tiny": tiny,
        "seed": seed,
    }


def table(result: dict) -> str:
    r, h0, h1 = result["rss_mib"], result["handles_start"], result["handles_end"]
    rows = [
        ("passes / translations", f"{result['passes']} / {result['translations']} in {result['seconds'] / 60:.1f} min"),
        ("refused (UserError) / failed", f"{result['refusals']} / {result['failures']}"),
        ("RSS median, first -> last pass", f"{r['first_pass_median']:.1f} -> {r['last_pass_median']:.1f} MiB ({r['growth_pct']:+.2f} %)"),
        ("peak RSS (VmHWM)", f"{r['peak']:.1f} MiB"),
        ("file descriptors, after pass 1 -> end", f"{h0['fds']} -> {h1['fds']}"),
        ("threads (Python), after pass 1 -> end", f"{h0['threads']} -> {h1['threads']}"),
        ("threads (OS), after pass 1 -> end", f"{h0['os_threads']} -> {h1['os_threads']}"),
        ("temporary files left", str(len(result["temporary_files_left"]))),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    lines += [f"{'met' if ok else 'MISSED':<6}  {name}" for name, ok in result["targets"].items()]
    lines += [f"failure: {f['type']}: {f['message']} ({f['source']}, x{f['count']})" for f in result["failure_examples"]]
    lines += [f"left: {name}" for name in result["temporary_files_left"][:20]]
    return "\n".join(lines)


def code_version() -> str:
    """The short commit of this checkout, ``-dirty`` when tracked files differ from it (as
    tools/benchmark.py names its files)."""
    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"  # not a git checkout
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="how long to run (whole passes, at least 2; default 20)")
    parser.add_argument("--passes", type=int, default=None, help="run exactly this many passes instead (at least 2)")
    parser.add_argument("--seed", type=int, default=0, help="the seed of the clips' texture and of the damage")
    parser.add_argument("--tiny", action="store_true", help="tiny untrained models instead of the bundled restore models")
    parser.add_argument("--json", type=Path, default=None,
                        help="where to write the results (default: docs/measurements/soak-DATE-COMMIT.json)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (its path is printed)")
    args = parser.parse_args(argv)
    if args.passes is not None and args.passes < 2:
        parser.error("--passes must be at least 2 (the last pass is compared with the first)")
    import torch

    commit = code_version()  # at the start: the code that is measured
    work = Path(tempfile.mkdtemp(prefix="v2v-soak-"))
    try:
        result = soak(work, args.minutes, args.seed, args.tiny, args.passes)
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    result["targets"] = targets(result)
    result["ok"] = all(result["targets"].values())
    result["_machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    result["_date"] = str(date.today())
    result["_time"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result["_commit"] = commit
    result["_command"] = " ".join(["python tools/soak.py", *(sys.argv[1:] if argv is None else argv)])
    print(table(result))
    out = args.json or ROOT / "docs" / "measurements" / f"soak-{result['_date']}-{commit}.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out} (python tools/render_docs.py renders it into docs/BENCHMARKS.md)")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
