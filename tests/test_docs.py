"""The measured parts of the docs are what the JSON beside them gives (tools/render_docs.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import docs_benchmarks  # noqa: E402
import render_docs  # noqa: E402


def test_generated_docs_equal_what_their_json_gives():
    """RESULTS.md, README's results paragraph and MODEL_CARD's tables: a number typed by hand,
    or a JSON changed without rendering, fails here (fix: python tools/render_docs.py)."""
    assert render_docs.RESULTS_JSON.exists()
    assert render_docs.render(check=True)


def _rows(inp: float, fw: float, tm: float, ewarp_fw: float = 1e-3, ewarp_tm: float = 7e-4) -> dict:
    base = {"ssim": 0.9, "ewarp_ref": 1e-3, "tof": 0.1, "flicker": 0.0}
    return {"input": {**base, "psnr": inp, "ewarp": 1e-3},
            "frame-wise": {**base, "psnr": fw, "ewarp": ewarp_fw},
            "temporal": {**base, "psnr": tm, "ewarp": ewarp_tm}}


def test_targets_are_computed_from_the_rows():
    case = _rows(30.0, 30.3, 30.6)
    case["classical"] = {**case["input"], "psnr": 30.1, "filter": "deblock"}
    data = {"sections": {
        "restore": {"clip": {"x264 CRF 35": case, "x264 CRF 40": _rows(27.0, 27.2, 27.1, ewarp_tm=9e-4)}},
        "clean": {"clip": {"x264 CRF 18": _rows(45.0, 44.95, 44.85)}},
        "colorize": {"clip": _rows(20.0, 24.0, 23.95, ewarp_tm=8.6e-4)},
    }}
    got = {(c, t): (round(v, 6), ok) for c, t, v, ok in render_docs.targets(data)}
    assert got[("clip, x264 CRF 35", "temporal ≥ input + 0.5 dB")] == (0.6, True)
    assert got[("clip, x264 CRF 35", "temporal > best classical filter")] == (0.5, True)
    assert got[("clip, x264 CRF 35", "temporal ewarp ≤ 0.8× frame-wise")] == (0.7, True)
    assert got[("clip, x264 CRF 40", "temporal ≥ input + 0.5 dB")] == (0.1, False)
    assert got[("clip, x264 CRF 40", "temporal ≥ frame-wise PSNR")] == (-0.1, False)
    assert got[("clip, x264 CRF 40", "temporal ewarp ≤ 0.8× frame-wise")] == (0.9, False)
    assert got[("clip, clean (x264 CRF 18)", "temporal loses ≤ 0.1 dB")] == (-0.15, False)
    assert got[("clip, colorize", "temporal ≥ frame-wise − 0.1 dB")] == (-0.05, True)
    assert got[("clip, colorize", "temporal ewarp ≤ 0.85× frame-wise")] == (0.86, False)
    summary = render_docs.summary(data)
    assert summary["cases"] == 2 and round(summary["gain_mean"], 6) == 0.35
    assert round(summary["over_classical_min"], 6) == 0.5


def test_replace_block_rewrites_only_between_the_markers():
    text = "a\n<!-- t:start (note) -->\nold\nlines\n<!-- t:end -->\nz\n"
    assert render_docs.replace_block(text, "t", "new") == "a\n<!-- t:start (note) -->\nnew\n<!-- t:end -->\nz\n"
    with pytest.raises(SystemExit, match="markers"):
        render_docs.replace_block("no markers", "t", "new")


def test_a_block_inside_a_list_item_keeps_its_indentation():
    text = "1. item\n   <!-- d:start -->\n   old\n   <!-- d:end -->\n2. next\n"
    assert render_docs.replace_block(text, "d", "   new") == "1. item\n   <!-- d:start -->\n   new\n   <!-- d:end -->\n2. next\n"


def test_benchmark_targets_and_before_after_come_from_the_run():
    row = {"model_fps_all_cores": 90.0, "model_fps_workers": 100.0, "e2e_fps": 80.0, "e2e_over_model": 0.8,
           "rss10_mib": 700.0, "rss60_mib": 721.0, "rss60_over_rss10": 1.03, "baseline_e2e_fps": 40.0,
           "e2e_over_baseline": 2.0, "e2e_over_baseline_per_repeat": [1.9, 2.0, 2.1]}
    data = {"framewise 64x64": row, "temporal 64x64": {**row, "e2e_over_model": 0.9, "rss60_over_rss10": 1.2},
            "temporal/framewise e2e time 64x64": 1.3, "_commit": "new", "_baseline": "old"}
    targets = "\n".join(docs_benchmarks.bench_targets(data))
    assert "60 s ≤ 1.1 × at 10 s: **missed** (at most 1.200)" in targets
    assert "frame-wise: met (1.30)" in targets and "model-only: **missed** (0.80–0.90)" in targets
    assert "| frame-wise 64×64 | 80.0 | 40.0 | 2.000 | 1.900, 2.000, 2.100 |" in docs_benchmarks.baseline_table(data)


def deflicker_case(out_psnr, out_ewarp, stable_psnr=None, constant=False) -> dict:
    """One case of a results.json deflicker section (tools/deflicker_results.py)."""
    rows = {"deflicker": {"psnr": out_psnr, "ssim": 0.9, "ewarp": out_ewarp}}
    if stable_psnr is not None:
        rows["stable version"] = {"psnr": stable_psnr, "ssim": 0.9, "ewarp": 1e-3}
    return {"rows": rows, "ewarp_processed": 4e-3, "ewarp_original": 1e-3, "constant": constant}


def test_deflicker_targets_are_computed_from_the_rows():
    import docs_deflicker

    case = deflicker_case
    section = {"clip": {"flickers": case(30.0, 1.2e-3, stable_psnr=30.5), "no stable": case(25.0, 3e-3),
                        "constant": case(36.0, 1e-3, constant=True)}}
    got = {(c, t): (round(v, 6), ok) for c, t, v, ok in docs_deflicker.targets(section)}
    assert got[("clip, flickers", "ewarp ≤ 0.5× the processed video's")] == (0.3, True)
    assert got[("clip, flickers", "ewarp ≤ 1.3× the original video's")] == (1.2, True)
    assert got[("clip, flickers", "PSNR ≥ the stable version's − 1 dB")] == (-0.5, True)
    assert got[("clip, no stable", "ewarp ≤ 0.5× the processed video's")] == (0.75, False)
    assert ("clip, no stable", "PSNR ≥ the stable version's − 1 dB") not in got
    assert got[("clip, constant", "PSNR to the processed frames ≥ 35 dB (no flicker)")] == (36.0, True)
    assert len(got) == 6
    summary = docs_deflicker.summary(section)
    assert (summary["ideal_processed_min"], summary["ideal_original_max"]) == (0.25, 1.0)
    # the ewarp targets scored for the ideal output too, on the cases that have one
    section["clip"]["worse"] = case(30.0, 3e-3, stable_psnr=30.0)
    assert docs_deflicker.ewarp_targets_met(section) == {"cases": 4, "ideal": 4, "model": 2}
    table = "\n".join(docs_deflicker.markdown(section))
    # what ewarp <= 0.5x the processed video's asks where no stable version shows the ideal
    assert "the processed video's warping error is 4.00–4.00× the original's, so" in table
    # the targets table scores the stable version on the warping-error targets beside the model
    assert "| clip, flickers | ewarp ≤ 0.5× the processed video's | 0.30× | met | 0.25× met |" in table
    assert "| clip, flickers | PSNR ≥ the stable version's − 1 dB | -0.50 dB | met | — |" in table
    assert "| clip, no stable | ewarp ≤ 0.5× the processed video's | 0.75× | **MISSED** | — |" in table
    # the stability=2 row: summarised where every case has it, never scored in the table
    assert "stability=2" not in table + docs_deflicker.readme_block(section)
    for c in section["clip"].values():
        c["rows"][docs_deflicker.STEADY] = {"psnr": 30.0, "ssim": 0.9, "ewarp": 0.5 * c["rows"]["deflicker"]["ewarp"]}
    text = "\n".join(docs_deflicker.markdown(section))
    assert "With `stability=2`" in text and "warping error is 0.15–0.38× the processed video's" in text
    assert "meets 6 of 9 targets" in text and "deflicker targets: 5 of 9 met" in text
    assert "With `stability=2` the warping error is 0.15–0.38×" in docs_deflicker.readme_block(section)


@pytest.mark.parametrize("name", ["restore", "colorize", "deflicker"])
def test_benchmark_model_only_timing_feeds_each_bundled_temporal_model(name):
    """tools/benchmark.py's model-only pass builds the inputs a model takes and an RGB previous
    output for each (1 gray input channel for colorize, 6 for the guided deflicker model)."""
    import benchmark

    fps = benchmark.model_only_fps(ROOT / "vid2vid_lite" / "weights" / f"{name}.safetensors", 32, 32, frames=1)
    assert fps > 0


#: Settings of the bundled recipes that depend on the machine or only on logging, not the model.
MACHINE_KEYS = {"data": ("train", "num_workers"), "train": ("val_every", "image_every", "log_every", "progress")}


def test_experiment_deflicker_is_the_bundled_deflicker_recipe():
    """`experiment=deflicker` (what TRAINING.md tells users to train with) composes to the same
    model, data, loss, optimiser and schedule as tools/train_bundled.py's deflicker recipe: the
    recipe names the preset, and the settings it adds around it (the shared architecture and
    schedule of every bundled model) must not change it."""
    from media import train_config
    from omegaconf import OmegaConf
    from train_bundled import temporal_args

    preset = train_config("experiment=deflicker", "data.train=videos")
    recipe = train_config(*temporal_args(Path("videos"), "deflicker", Path("unused")))
    preset, recipe = (OmegaConf.to_container(c, resolve=True) for c in (preset, recipe))
    for cfg in (preset, recipe):
        for group, keys in MACHINE_KEYS.items():
            for key in keys:
                cfg[group].pop(key)
    for group in ("model", "data", "loss", "optim", "train"):
        assert preset[group] == recipe[group], group


def test_compare_deflicker_puts_the_targets_of_several_runs_side_by_side(tmp_path, capsys):
    import json

    import compare_deflicker

    def write(name, ewarp, cases=("flickers",)):
        section = {"clip": {c: deflicker_case(30.0, ewarp, stable_psnr=30.5) for c in cases}}
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"sections": {"deflicker": section}}))
        return str(path)

    compare_deflicker.main([write("calm", 1.2e-3), write("shaky", 3e-3)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[1] calm: 3 of 3 targets met; ewarp 0.300x the processed video's")
    assert lines[1].startswith("[2] shaky: 1 of 3 targets met; ewarp 0.750x")
    assert "PSNR -0.50 dB from the stable version's (median)" in lines[0]
    row = next(line for line in lines if "| ewarp ≤ 0.5× the processed video's" in line)
    assert row.split()[-2:] == ["0.30*", "0.75"]
    # a file's other model rows (deflicker_results.MODEL_ROWS) are runs of their own
    steady = json.loads(Path(write("both", 3e-3)).read_text())
    steady["sections"]["deflicker"]["clip"]["flickers"]["rows"]["deflicker, stability=2"] = {"psnr": 30.0, "ssim": 0.9, "ewarp": 1.6e-3}
    (tmp_path / "both.json").write_text(json.dumps(steady))
    compare_deflicker.main([str(tmp_path / "both.json")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[1] both: 1 of 3 targets met")
    assert lines[1].startswith("[2] both (stability=2): 2 of 3 targets met; ewarp 0.400x")
    with pytest.raises(SystemExit, match="different clips or cases"):
        compare_deflicker.main([write("calm", 1.2e-3), write("other", 1e-3, cases=("elsewhere",))])
    with pytest.raises(SystemExit, match="no deflicker section"):
        compare_deflicker.main([str(tmp_path / "missing.json")])
