"""Broken, foreign and hostile checkpoint files for the tests, each made from a real tiny
vid2vid_lite checkpoint (:func:`media.tiny_checkpoints`), and a pickle payload that runs a shell
command when something unpickles it."""

from __future__ import annotations

import json
import os
import pickle
import shlex
import struct
import zipfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from vid2vid_lite.checkpoint import FORMAT, LATEST

SYSTEM = f"{os.system.__module__}.system"  # what the payload loads: posix.system (nt.system on Windows)
USE_OURS = "a checkpoint written by vid2vid_lite.train"  # the advice every message ends with


class Payload:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker: Path):
        self.command = f"touch {shlex.quote(str(marker))}"

    def __reduce__(self):
        return (os.system, (self.command,))


def save_payload(path: Path, marker: Path, legacy: bool = False, protocol: int = 2) -> Path:
    """A ``.pt`` as ``torch.save`` writes it (zip, or the legacy pickle format) whose generator
    is the :class:`Payload`."""
    torch.save({"generator": Payload(marker), "config": {}}, path,
               _use_new_zipfile_serialization=not legacy, pickle_protocol=protocol)
    return path


def unpickle_plainly(path: Path) -> None:
    """What an unsafe loader does with a ``.pt`` file: ``pickle`` its ``data.pkl`` (zip) or its
    pickles in a row (legacy: magic number, protocol, system info, the data)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            (name,) = [n for n in archive.namelist() if n.endswith("data.pkl")]
            pickle.loads(archive.read(name))
    else:
        with open(path, "rb") as f:
            for _ in range(4):
                pickle.load(f)


def _tensors_and_meta(good: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(good), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def bad_checkpoints(folder: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """``{case: (path, words its error must hold)}``: every way a ``weights=`` file can be wrong."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors, meta = _tensors_and_meta(good)
    config = json.loads(meta["config"])
    first = sorted(tensors)[0]
    data = good.read_bytes()
    cases: dict[str, tuple[Path, str]] = {}

    def write(name: str, content: bytes, expect: str) -> None:
        (folder / name).write_bytes(content)
        cases[name] = (folder / name, expect)

    def safetensors(name: str, expect: str, values: dict | None = None, metadata: dict | None = None,
                    **config_changes) -> None:
        if metadata is None:
            metadata = {"format": FORMAT, "config": json.dumps({**config, **config_changes})}
        save_file(tensors if values is None else values, str(folder / name), metadata=metadata)
        cases[name] = (folder / name, expect)

    # damaged safetensors: flipped bytes in the JSON header, a huge header length, cut short
    header_len = struct.unpack("<Q", data[:8])[0]
    flipped = bytearray(data)
    for i in range(12, 20):
        flipped[i] ^= 0xFF
    write("flipped_header.safetensors", bytes(flipped), "damaged safetensors file")
    write("huge_header.safetensors", struct.pack("<Q", 2**60) + data[8:], "damaged safetensors file")
    write("beyond_the_end.safetensors", struct.pack("<Q", len(data)) + data[8:], "damaged safetensors file")
    write("cut_short.safetensors", data[: 8 + header_len + 10], "damaged safetensors file")
    # wrong or missing tensors
    safetensors("missing_key.safetensors", f"missing {first}", {k: v for k, v in tensors.items() if k != first})
    safetensors("extra_key.safetensors", "unexpected extra.weight", {**tensors, "extra.weight": torch.zeros(2)})
    safetensors("wrong_shape.safetensors", f"{first} has shape (3, 2)", {**tensors, first: torch.zeros(3, 2)})
    safetensors("wrong_dtype.safetensors", f"{first} is int64, not float32", {**tensors, first: tensors[first].long()})
    # another project's checkpoint, or ours with a broken config
    safetensors("foreign.safetensors", "a safetensors file without vid2vid_lite's config", metadata={"framework": "other"})
    safetensors("broken_json.safetensors", "damaged vid2vid_lite config (no generator config inside)",
                metadata={"format": FORMAT, "config": "{no json"})
    safetensors("no_config.safetensors", "damaged vid2vid_lite config", metadata={"format": FORMAT})
    safetensors("unknown_generator.safetensors", "unknown generator 'unet9000'", generator={"name": "unet9000"})
    safetensors("unknown_option.safetensors", "['colour']", generator={**config["generator"], "colour": 3})
    safetensors("bad_option.safetensors", "cannot build", generator={**config["generator"], "ngf": "eight"})
    safetensors("unknown_task.safetensors", "unknown task 'sharpen'", task="sharpen", task_spec=None)
    safetensors("scale_mismatch.safetensors", "task upscale2x 2x", task="upscale2x", task_spec=None)  # a 1x model
    torch.save(tensors, folder / "state_dict.pt")
    cases["state_dict.pt"] = (folder / "state_dict.pt", "a bare state dict, without the config")
    torch.save({"model": tensors, "epoch": 3}, folder / "other_keys.pt")
    cases["other_keys.pt"] = (folder / "other_keys.pt", "no generator inside")
    torch.save({"generator": {"w": 1}, "config": config}, folder / "not_tensors.pt")
    cases["not_tensors.pt"] = (folder / "not_tensors.pt", "no generator inside")
    torch.save({"generator": tensors, "config": config}, folder / "cut_short.pt")
    write("cut_short.pt", (folder / "cut_short.pt").read_bytes()[:300], "damaged or incomplete PyTorch file")
    # empty files, whatever their suffix
    for suffix in (".safetensors", ".pt", ".ckpt", ".bin", ""):
        write(f"empty{suffix}", b"", "is empty (0 bytes)")
    # not a checkpoint at all
    write("notes.pt", b"these are my notes\n" * 20, "neither a safetensors nor a PyTorch file")
    write("picture.pt", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "neither a safetensors nor a PyTorch file")
    write("model.ckpt", struct.pack("<Q", 2**60) + data[8:], "neither a safetensors nor a PyTorch file")
    # training run directories
    (folder / "run_without_checkpoints").mkdir()
    cases["run_without_checkpoints"] = (folder / "run_without_checkpoints", f"folder without {LATEST}")
    damaged_run = folder / "damaged_run"
    (damaged_run / LATEST).parent.mkdir(parents=True)
    (damaged_run / LATEST).write_bytes(bytes(flipped))
    cases["damaged_run"] = (damaged_run, f"{damaged_run / LATEST} is a damaged safetensors file")
    return cases
