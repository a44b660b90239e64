"""tools/results.py's upscale section (tools/upscale_results.py) on a tiny clip, and its rendering
(tools/render_docs.py): untrained upscale2x models are Lanczos, so their rows must be Lanczos's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from media import moving_pattern

from vid2vid_lite.checkpoint import save_generator
from vid2vid_lite.io import write_video
from vid2vid_lite.nn import build_generator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import docs_upscale  # noqa: E402
import render_docs
import upscale_results

METRICS = {"psnr", "ssim", "ewarp", "ewarp_ref", "tof", "flicker"}


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> tuple[dict, Path]:
    """The section measured on 6 frames of 48x64 with untrained frame-wise and temporal models,
    and the folder that holds its picture (crop.png)."""
    folder = tmp_path_factory.mktemp("upscale")
    clip = write_video(folder / "tiny.mkv", moving_pattern(6, 48, 64), fps=25, crf=0)
    models = {}
    for key, name in (("upscale2x-framewise", "sr"), ("upscale2x", "temporal_sr")):
        model = build_generator({"name": name, "channels": 8, "layers": 3})
        models[key] = save_generator(folder / f"{name}.safetensors", model, {"generator": model.config, "task": "upscale2x"})
    return upscale_results.measure({"tiny": clip}, models, folder / "work", figure=folder / "crop.png"), folder


def test_untrained_models_measure_as_lanczos_and_bicubic_differs(measured):
    section, folder = measured
    cases = section["tiny"]
    assert list(cases) == ["clean", "x264 CRF 23"]
    for rows in cases.values():
        assert list(rows) == list(upscale_results.METHODS)
        assert all(set(r) == METRICS for r in rows.values())
        lanczos = rows["Lanczos"]["psnr"]
        assert abs(rows["frame-wise"]["psnr"] - lanczos) < 0.05 and abs(rows["temporal"]["psnr"] - lanczos) < 0.05
        assert abs(rows["bicubic"]["psnr"] - lanczos) > 0.01
    assert cases["clean"]["Lanczos"]["psnr"] > cases["x264 CRF 23"]["Lanczos"]["psnr"]  # the encoder loses some
    assert section["groups"] == {"real clips": ["tiny"], "photo moves": []}
    assert section["means"]["real clips"] == cases and section["means"]["photo moves"] == {}
    assert section["files"] == {"tiny": "tiny.mkv"}
    figure = section["figure"]
    assert figure["clip"] == "tiny" and figure["size"] == 48  # the crop fits the 48-line frame
    png = folder / "crop.png"
    assert png.exists() and png.stat().st_size < 300_000


def test_the_section_renders_its_tables_and_targets(measured):
    section, _ = measured
    text = "\n".join(docs_upscale.markdown(section))
    assert f"## {docs_upscale.UPSCALE_HEADING}" in text
    assert "### upscale2x, clean input" in text and "### upscale2x, x264 CRF 23 input" in text
    assert "| clip | method | psnr | Δpsnr vs Lanczos | ssim | ewarp | tof |" in text
    assert "| `tiny` | bicubic |" in text and "| **mean, real clips** | bicubic |" in text
    assert "](images/crop.png)" in text
    # untrained models: Lanczos + 0.3 dB is missed on the clip, ewarp and tOF are about frame-wise's
    got = {(case, target): ok for case, target, _, ok in docs_upscale.upscale_targets(section)}
    assert got[("tiny, clean", "temporal ≥ Lanczos + 0.3 dB")] is False
    assert len(got) == 6  # the real-clip mean's 3, the clip's 1, its ewarp and tOF
    block = docs_upscale.readme_block(section)
    assert f"(docs/RESULTS.md#{docs_upscale.UPSCALE_ANCHOR})" in block and "](docs/images/crop.png)" in block
    # in the whole documents: RESULTS.md gains the part, README's upscale block the paragraph
    data = json.loads(render_docs.RESULTS_JSON.read_text())
    data["sections"]["upscale"] = section
    assert text in render_docs.results_markdown(data)
    readme = render_docs.replace_block(render_docs.README.read_text(), "upscale", block)
    assert f"<!-- upscale:start (tools/render_docs.py from docs/measurements/results.json) -->\n{block}\n<!-- upscale:end -->" in readme


def _rows(lanczos: float, framewise: float, temporal: float, ewarp: tuple[float, float] = (1e-3, 8e-4),
          tof: tuple[float, float] = (0.2, 0.1)) -> dict:
    base = {"ssim": 0.9, "ewarp": 1e-3, "ewarp_ref": 1e-3, "tof": 0.2, "flicker": 0.0}
    return {"bicubic": {**base, "psnr": lanczos - 0.5}, "Lanczos": {**base, "psnr": lanczos},
            "frame-wise": {**base, "psnr": framewise, "ewarp": ewarp[0], "tof": tof[0]},
            "temporal": {**base, "psnr": temporal, "ewarp": ewarp[1], "tof": tof[1]}}


def test_upscale_targets_are_computed_from_the_rows():
    clips = {"a": {"clean": _rows(30.0, 31.0, 31.5), "x264 CRF 23": _rows(28.0, 28.1, 28.2)},
             "b": {"clean": _rows(32.0, 32.1, 32.2, ewarp=(1e-3, 9.5e-4)), "x264 CRF 23": _rows(29.0, 29.4, 29.6)},
             "move_x": {"clean": _rows(35.0, 35.0, 34.8, tof=(0.1, 0.2)), "x264 CRF 23": _rows(30.0, 30.0, 30.0)}}
    real = {case: {m: {k: (clips["a"][case][m][k] + clips["b"][case][m][k]) / 2 for k in clips["a"][case][m]}
                   for m in clips["a"][case]} for case in clips["a"]}
    section = {**clips, "groups": {"real clips": ["a", "b"], "photo moves": ["move_x"]},
               "means": {"real clips": real, "photo moves": {}}, "files": {}}
    got = {(c, t): (round(v, 6), ok) for c, t, v, ok in docs_upscale.upscale_targets(section)}
    assert got[("mean of real clips, clean", "temporal ≥ Lanczos + 1.0 dB")] == (0.85, False)
    assert got[("a, clean", "temporal ≥ Lanczos + 0.3 dB")] == (1.5, True)
    assert got[("b, clean", "temporal ≥ Lanczos + 0.3 dB")] == (0.2, False)
    assert got[("move_x, clean", "temporal ≥ Lanczos − 0.1 dB")] == (-0.2, False)
    assert got[("mean of real clips, x264 CRF 23", "temporal ≥ Lanczos + 0.3 dB")] == (0.4, True)
    assert got[("mean of real clips, clean", "temporal ≥ frame-wise + 0.2 dB")] == (0.3, True)
    assert got[("a, clean", "temporal ewarp ≤ 0.9× frame-wise")] == (0.8, True)
    assert got[("b, clean", "temporal ewarp ≤ 0.9× frame-wise")] == (0.95, False)
    assert got[("move_x, clean", "temporal tOF ≤ 1.0× frame-wise")] == (2.0, False)
    assert len(got) == 3 + 3 + 3 * 2
    text = "\n".join(docs_upscale.markdown(section))
    assert "### upscale2x targets: 7 of 12 met" in text
    assert "| b, clean | temporal ewarp ≤ 0.9× frame-wise | 0.95× | **MISSED** |" in text
    assert "+0.850 dB over Lanczos on average with clean input (+0.200 to +1.500 per clip" in text


def test_a_recorded_val_experiment_renders_its_gains_and_ratios(tmp_path):
    clips = {"a": {"clean": _rows(30.0, 31.0, 31.5, ewarp=(2e-3, 1e-3), tof=(0.2, 0.1))},
             "move_x": {"clean": _rows(35.0, 35.2, 35.0, ewarp=(1e-3, 8e-4), tof=(0.1, 0.1))}}
    data = {"date": "2026-12-07", "models": {"upscale2x": "t", "upscale2x-framewise": "f"},
            "sections": {"upscale": {**clips, "groups": {"real clips": ["a"], "photo moves": ["move_x"]}}}}
    path = tmp_path / "val_upscale.json"
    upscale_results.record_experiment("first", data, path)
    record = json.loads(path.read_text())
    assert record["first"]["clips"]["a"]["clean"] == {"frame-wise": 1.0, "temporal": 1.5, "ewarp_ratio": 0.5,
                                                      "tof_ratio": 0.5}
    table = docs_upscale.tried_block(record)
    assert "| first | +1.000 / +0.200 dB | +1.500 / +0.000 dB | +0.500 dB | 0.50–0.80× | 0.50–1.00× |" in table
