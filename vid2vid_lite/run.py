"""Translate a video file or a folder of frames.

    python -m vid2vid_lite.run INPUT [output=PATH] [weights=NAME|PATH] [device=auto|cpu|cuda|cuda:N]
                               [batch=N] [key=value ...]
    python -m vid2vid_lite.run PROCESSED guide=ORIGINAL weights=DEFLICKER_MODEL [output=PATH]

INPUT may also be given as ``input=PATH``.  Every option is in ``vid2vid_lite/conf/run.yaml``;
``-m`` runs a Hydra sweep (each job's default output then goes into its sweep folder).
"""

from __future__ import annotations

import sys
import warnings
from contextlib import ExitStack
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .checkpoint import checkpoint_task, load_generator, resolve_weights
from .cli import lift_positional, pick_device
from .demo import run_demo
from .engine.allocator import keep_freed_memory
from .engine.precision import PRECISIONS
from .engine.streams import check_guide
from .engine.translator import Translator
from .errors import InputDamaged, UserError, report_user_errors
from .io import Source, VideoInfo, check_writable, is_video_path, open_sink, open_source
from .io.audio import audio_fits
from .io.job import JobFolder, file_digest, fingerprint

DEFAULT_SUFFIX = "_v2v"
#: The options that change the output's frames: a job continues only where they are the same.
OUTPUT_OPTIONS = ("warmup", "scene_cut", "stability", "resize", "dis_preset", "flow_check", "fps", "crf",
                  "preset", "side_by_side")


def default_output(info: VideoInfo, folder: Path | None = None) -> Path:
    """``<stem>_v2v.mp4`` beside a video (``.mkv`` where its audio can be copied into Matroska but
    not into MP4), or
    ``<name>_v2v/`` beside a frame folder; inside ``folder`` when given (sweeps)."""
    path = info.path
    where = folder or path.parent
    if info.kind == "frames":
        return where / f"{path.name}{DEFAULT_SUFFIX}"
    # MP4 where the audio can be copied into it, or fits no container better (re-encoded to AAC)
    suffix = ".mkv" if not audio_fits(path, ".mp4") and audio_fits(path, ".mkv") else ".mp4"
    return where / f"{path.stem}{DEFAULT_SUFFIX}{suffix}"


def resolve_output(cfg: DictConfig, info: VideoInfo, guide: VideoInfo | None = None) -> Path:
    if cfg.output:
        output = Path(str(cfg.output)).expanduser()
    else:
        sweep_dir = None
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            sweep_dir = Path(HydraConfig.get().runtime.output_dir)
        output = default_output(info, sweep_dir)
    if output.resolve() == info.path.resolve():
        raise UserError(f"output {output} is the input; choose another output=")
    if guide is not None and output.resolve() == guide.path.resolve():
        raise UserError(f"output {output} is the guide; choose another output=")
    return output


def open_guide(cfg: DictConfig, task) -> Source | None:
    """The ``guide=`` video of a guided task (``deflicker``: the original the input was processed
    from), opened; None for the other tasks, which take none."""
    if not task.guided:
        if cfg.get("guide"):
            raise UserError(f"guide= is only for guided tasks (deflicker); weights={cfg.weights} is a {task.name} model")
        return None
    if not cfg.get("guide"):
        raise UserError(
            f"weights={cfg.weights} is a {task.name} model: give guide=ORIGINAL, the video (or frame folder) "
            "the input was processed from"
        )
    try:
        return open_source(Path(str(cfg.guide)).expanduser())
    except UserError as err:
        raise UserError(f"guide: {err}") from None


def side_by_side_path(output: Path) -> Path:
    """``clip_v2v.mp4`` -> ``clip_v2v_sbs.mp4``; ``frames_v2v`` -> ``frames_v2v_sbs``."""
    return output.with_name(f"{output.stem}_sbs{output.suffix}" if is_video_path(output) else f"{output.name}_sbs")


def positive_or_auto(key: str, value) -> int | str:
    """``batch=`` / ``workers=``: ``auto`` (the translator picks) or a positive whole number."""
    if str(value) == "auto":
        return "auto"
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise UserError(f"{key}={value} is not a positive whole number (or auto)")
    return number


def stability_for(value, model, weights) -> float:
    """``stability=``: a positive number, and other than 1 only for a temporal model (the
    power of its blend mask; a frame-wise model has none)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = 0.0
    if not number > 0 or number == float("inf"):
        raise UserError(f"stability={value} is not a positive number (1: as trained; 2: steadier)")
    if number != 1.0 and getattr(model, "flow_source", "none") == "none":
        raise UserError(f"stability= is for temporal models (restore, colorize, deflicker); weights={weights} is frame-wise")
    return number


def job_identity(cfg: DictConfig, info: VideoInfo, guide: Source | None, precision: str, device) -> dict:
    """What a job's output depends on (io/job.py): input, guide, weights (hashed) and the
    options that change its frames."""
    return {
        "input": fingerprint(info.path),
        "guide": fingerprint(guide.info.path) if guide is not None else None,
        "weights": file_digest(resolve_weights(str(cfg.weights)), whole=True),
        "options": {key: cfg.get(key) for key in OUTPUT_OPTIONS},
        "precision": precision,
        "device": device.type,
    }


def positive_number(key: str, value) -> float:
    """A finite number above 0 (``part_seconds=``), else a one-line error naming ``key``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = 0.0
    if not 0 < number < float("inf"):
        raise UserError(f"{key}={value} is not a positive number")
    return number


def translate(cfg: DictConfig) -> Path:
    """Do the work of one ``run`` invocation; returns the output path."""
    if not cfg.input:
        raise UserError("no input given: python -m vid2vid_lite.run INPUT (a video file or a folder of frames)")
    if cfg.on_error not in ("fail", "keep"):
        raise UserError(f"on_error={cfg.on_error} is not known; use fail or keep")
    if cfg.precision not in PRECISIONS:
        raise UserError(f"precision={cfg.precision} is not known; use {', '.join(PRECISIONS)}")
    for key in ("flow_check", "scene_cut", "side_by_side", "compile", "progress", "fresh"):
        if not isinstance(cfg.get(key), bool):
            raise UserError(f"{key}={cfg.get(key)} is not true or false")
    part_seconds = positive_number("part_seconds", cfg.part_seconds)
    device = pick_device(cfg.device)
    model, config = load_generator(str(cfg.weights), device)
    task = checkpoint_task(config)
    translator = Translator(
        model, task, device, batch=positive_or_auto("batch", cfg.batch), warmup=cfg.warmup,
        precision=cfg.precision, scene_cut=cfg.scene_cut, resize=cfg.resize,
        dis_preset=cfg.dis_preset, flow_check=cfg.flow_check, compile=cfg.compile,
        workers=positive_or_auto("workers", cfg.workers),
        stability=stability_for(cfg.stability, model, cfg.weights),
    )
    with ExitStack() as stack:
        source = stack.enter_context(open_source(Path(str(cfg.input)).expanduser()))
        info = source.info
        guide = open_guide(cfg, task)
        if guide is not None:
            stack.enter_context(guide)
            check_guide(info, guide.info)  # before any output exists
        output = resolve_output(cfg, info, None if guide is None else guide.info)
        check_writable(output)
        job = JobFolder(output)
        note = job.start(job_identity(cfg, info, guide, translator.precision, device), fresh=cfg.fresh)
        if note:
            print(note, file=sys.stderr)
        # A run cut short (Ctrl-C, a crash) keeps its complete parts for the same command to
        # continue; one refused for its input or options would only be refused again.
        keep_parts = True
        try:
            stats = _translate_job(cfg, translator, task, source, guide, output, job, part_seconds)
            keep_parts = False
        except InputDamaged as err:
            keep_parts = False
            if cfg.on_error != "keep":
                raise
            print(f"warning: {err}; kept the {err.frames_kept} frames before it", file=sys.stderr)
            return output
        except UserError:
            keep_parts = False
            raise
        except KeyboardInterrupt:
            done = job.done()
            if done:
                print(f"{len(done)} complete part(s) of {output} kept in {job.path}: the same command continues "
                      "from there", file=sys.stderr)
            raise
        finally:
            job.close(keep_parts=keep_parts)
    for warning in stats.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    batch = f", batch {stats.batch}" if stats.batch > 1 else ""  # batch=auto: what it picked
    kept = f" (and {stats.kept_frames} kept from the interrupted run)" if stats.kept_frames else ""
    print(f"{stats.frames} frames{kept} in {stats.seconds:.1f} s ({stats.fps:.1f} fps), {translator.precision}{batch} -> {output}")
    if cfg.side_by_side:
        print(f"side by side -> {side_by_side_path(output)}")
    return output


def _translate_job(cfg: DictConfig, translator: Translator, task, source: Source, guide: Source | None,
                   output: Path, job: JobFolder, part_seconds: float):
    """Open the sinks (written inside the job folder), translate into them and close them
    (rename into place); returns the translator's stats.  On ``on_error=keep`` with a damaged input the
    frames before the damage are closed into the output and :class:`InputDamaged` is raised
    with ``frames_kept`` set."""
    info = source.info
    size = dict(width=info.width * task.scale, height=info.height * task.scale)
    options = dict(fps=None if info.kind == "video" else float(cfg.fps), crf=cfg.crf, preset=cfg.preset,
                   keep_damaged_audio=cfg.on_error == "keep")
    paths = [output] + ([side_by_side_path(output)] if cfg.side_by_side else [])
    sinks = []
    try:
        for i, path in enumerate(paths):
            width = size["width"] * (2 if i else 1)
            temporary = job.work_path(("side_by_side" if i else "output") + path.suffix)
            sinks.append(open_sink(path, like=info, width=width, height=size["height"], temporary=temporary, **options))
        stats = translator.translate(source, *sinks, progress=cfg.progress, guide=guide, job=job,
                                     part_seconds=part_seconds, keep_damaged=cfg.on_error == "keep")
    except InputDamaged as err:
        if cfg.on_error != "keep":
            for sink in sinks:
                sink.abort()
            raise
        for sink in sinks:
            sink.close()
        err.frames_kept = sinks[0].frames_written
        raise
    except BaseException:
        for sink in sinks:
            sink.abort()
        raise
    for sink in sinks:
        sink.close()
    return stats


@hydra.main(version_base="1.3", config_path="conf", config_name="run")
@report_user_errors
def main(cfg: DictConfig) -> None:
    warnings.filterwarnings("ignore", module="torch")  # keep user output readable
    keep_freed_memory()  # per-frame activations reuse memory instead of new zeroed pages
    if cfg.input is None:
        run_demo(cfg, translate)  # no input: the demo (other options, e.g. device=, apply)
    else:
        translate(cfg)


@report_user_errors
def cli() -> None:
    sys.argv[1:] = lift_positional(sys.argv[1:])
    main()


if __name__ == "__main__":
    cli()
