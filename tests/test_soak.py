"""tools/soak.py: a short soak runs and reports, and its leak detectors can fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import soak  # noqa: E402


def test_a_short_soak_reports_every_number(tmp_path):
    out = tmp_path / "soak.json"
    result = subprocess.run([sys.executable, "tools/soak.py", "--tiny", "--passes", "2", "--json", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.exists(), result.stdout + result.stderr
    data = json.loads(out.read_text())
    assert result.returncode == (0 if data["ok"] else 1), result.stdout + result.stderr
    assert [line for line in result.stdout.splitlines() if line.startswith("pass ")][-1].startswith("pass 2: ")
    files = len(data["corpus"]["valid"]) + len(data["corpus"]["damaged"])
    assert len(data["corpus"]["valid"]) == len(soak.CLIPS) + 1 and data["corpus"]["damaged"]
    assert data["passes"] == 2 and data["translations"] == 2 * files
    assert 0 < data["refusals"] < data["translations"]  # damaged files are refused, the valid ones translate
    assert data["failures"] == 0 and data["failure_examples"] == [], data["failure_examples"]
    assert data["temporary_files_left"] == []
    rss = data["rss_mib"]
    assert 0 < rss["first_pass_median"] <= rss["peak"] and 0 < rss["last_pass_median"] <= rss["peak"]
    assert len(rss["per_pass_median"]) == 2 and isinstance(rss["growth_pct"], float)
    for handles in (data["handles_start"], data["handles_end"]):
        assert handles["fds"] >= 3 and handles["threads"] >= 1 and handles["os_threads"] >= handles["threads"]
    assert set(data["targets"]) == set(soak.targets(data)) and data["ok"] == all(data["targets"].values())
    assert data["tiny"] and data["_command"].startswith("python tools/soak.py") and data["_commit"] and data["_machine"]


def _result(rss_first, rss_last, fds=(10, 10), threads=(3, 3), left=(), failures=0) -> dict:
    rss = {**soak.rss_growth(rss_first, rss_last), "peak": max(rss_first + rss_last), "per_pass_median": []}
    return {"rss_mib": rss, "failures": failures, "temporary_files_left": list(left),
            "handles_start": {"fds": fds[0], "threads": threads[0], "os_threads": 8},
            "handles_end": {"fds": fds[1], "threads": threads[1], "os_threads": 8}}


def test_the_leak_detector_fails_on_growing_memory_and_leaked_handles():
    steady = _result([500, 510, 505], [507, 503, 512])
    assert all(soak.targets(steady).values())
    growing = soak.rss_growth([500, 505, 510], [540, 545, 550])  # +7.9 %
    assert round(growing["growth_pct"], 1) == 7.9 and growing["first_pass_median"] == 505
    assert soak.targets(_result([500, 505, 510], [540, 545, 550])) == {
        "RSS growth ≤ 5 %": False, "no leaked file descriptor": True, "no leaked thread": True,
        "no temporary file left": True, "no failure": True}
    missed = soak.targets(_result([500], [500], fds=(10, 11), threads=(3, 4), left=["x"], failures=1))
    assert not any(v for k, v in missed.items() if not k.startswith("RSS"))


def test_the_temporary_file_detector_finds_hidden_and_visible_leftovers(tmp_path):
    (tmp_path / "corpus").mkdir()
    clip = tmp_path / "corpus" / "clip.mp4"
    clip.write_bytes(b"x")
    out = tmp_path / "out"
    (out / "frames_out").mkdir(parents=True)
    (out / "frames_out" / "000001.png").write_bytes(b"x")
    (out / "done.mp4").write_bytes(b"x")
    keep, folders = {clip, out / "frames_out", out / "done.mp4"}, {tmp_path / "corpus", out, tmp_path / "tmp"}
    (tmp_path / "tmp").mkdir()
    assert soak.stray_entries(tmp_path, keep, folders) == []
    (out / ".done.mp4.tmp-ab12.mp4").write_bytes(b"x")  # a hidden temporary of another tool
    (out / "clip.mp4.v2v-cd34").mkdir()  # a visible job folder
    (out / "clip.mp4.v2v-cd34" / "part.mp4").write_bytes(b"x")
    (tmp_path / "tmp" / "tmpxyz").write_bytes(b"x")  # the process's temporary folder
    (tmp_path / "corpus" / "frames").mkdir()  # a folder that is not an input
    assert soak.stray_entries(tmp_path, keep, folders) == ["corpus/frames",
        "out/.done.mp4.tmp-ab12.mp4", "out/clip.mp4.v2v-cd34", "tmp/tmpxyz"]


def test_a_missed_target_exits_1_and_the_docs_state_it(tmp_path, monkeypatch):
    import docs_benchmarks

    def fake_soak(work, minutes, seed, tiny, passes=None):
        return {**_result([500, 505, 510], [540, 545, 550], fds=(10, 12)), "passes": 9, "translations": 171,
                "refusals": 72, "seconds": 65.0, "pass_seconds": [7.0] * 9, "failure_examples": [],
                "corpus": {"valid": ["clip.mp4", "frames"], "damaged": ["clip-header0.mp4"], "size": "96x64",
                           "frames": 36, "fps": 25, "mutations": "made once from seed 0"},
                "models": {"temporal": "restore", "framewise": "restore-framewise"}, "tiny": False, "seed": 0}

    monkeypatch.setattr(soak, "soak", fake_soak)
    out = tmp_path / "soak-2026-01-01-abc.json"
    assert soak.main(["--minutes", "1", "--json", str(out)]) == 1
    data = json.loads(out.read_text())
    assert not data["ok"] and not data["targets"]["no leaked file descriptor"]
    text = "\n".join(docs_benchmarks.soak_markdown([(out, data)]))
    assert "| RSS, median of the pass | 505.0 MiB | 545.0 MiB (+7.92 %) |" in text
    assert "| file descriptors, after the pass | 10 | 12 |" in text and "RSS growth ≤ 5 %: **missed**" in text
    assert "`python tools/soak.py --minutes 1 --json" in text and "the bundled `restore` (temporal" in text
    assert "No soak has been recorded" in "\n".join(docs_benchmarks.soak_markdown([]))
