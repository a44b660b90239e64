"""The package works when installed, not only from this checkout: configs and weights travel."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_installed_wheel_finds_its_configs(tmp_path):
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    [wheel] = wheel_dir.glob("vid2vid_lite-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    config_dir = ROOT / "vid2vid_lite" / "conf"
    for yaml in config_dir.rglob("*.yaml"):
        assert f"vid2vid_lite/conf/{yaml.relative_to(config_dir).as_posix()}" in names
    for weights in (ROOT / "vid2vid_lite" / "weights").glob("*.safetensors"):
        assert f"vid2vid_lite/weights/{weights.name}" in names

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = dict(os.environ, PYTHONPATH=str(site))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([sys.executable, "-c", "import vid2vid_lite; print(vid2vid_lite.__file__)"],
                           capture_output=True, text=True, env=env, cwd=elsewhere, check=True)
    assert where.stdout.startswith(str(site))
    for app in ("run", "evaluate"):
        result = subprocess.run([sys.executable, "-m", f"vid2vid_lite.{app}", "--cfg", "job"],
                                capture_output=True, text=True, env=env, cwd=elsewhere, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "output:" in result.stdout
