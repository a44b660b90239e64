"""The README's quickstart is the truth: CI runs its lines, and it documents every run option."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in re.findall(r"```bash\n(.+?)\n\s*```", quick)]


def test_ci_runs_the_readme_install_and_test_lines():
    install, demo, tests = quickstart_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert install in ci
    assert tests in ci
    assert demo == "python -m vid2vid_lite.run"


def test_readme_documents_every_run_option():
    config = yaml.safe_load((ROOT / "vid2vid_lite" / "conf" / "run.yaml").read_text())
    text = (ROOT / "README.md").read_text()
    for key in config:
        if key in ("defaults", "hydra"):
            continue
        assert f"`{key}" in text, f"README does not mention run option {key}"
