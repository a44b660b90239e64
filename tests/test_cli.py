"""The argv handling that lets a positional INPUT live beside Hydra overrides."""

import pytest
from media import run_config

from vid2vid_lite.cli import lift_positional, pick_device, quote_override
from vid2vid_lite.errors import UserError


@pytest.mark.parametrize(
    "path",
    ["clip.mp4", "my clip.mp4", "a,b.mp4", "x=y.mp4", "it's.mp4", 'say "hi".mp4', "back\\slash.mp4",
     "br[ack]ets{}.mp4", "dollar${x}.mp4", "trailing\\"],
)
def test_quoted_paths_parse_back_to_themselves(path):
    cfg = run_config(f"input={quote_override(path)}")
    assert cfg.input == path


def test_lift_positional_keeps_flags_and_overrides(tmp_path):
    assert lift_positional(["clip.mp4", "batch=4"]) == ["input='clip.mp4'", "batch=4"]
    assert lift_positional(["-m", "clip.mp4", "crf=17,23"]) == ["-m", "input='clip.mp4'", "crf=17,23"]
    assert lift_positional(["input=clip.mp4"]) == ["input=clip.mp4"]
    assert lift_positional(["--cfg", "job", "clip.mp4"])[-1] == "input='clip.mp4'"
    assert lift_positional(["-cn", "run", "clip.mp4"]) == ["-cn", "run", "input='clip.mp4'"]
    # an existing path with '=' is a path, not an override
    odd = tmp_path / "a=b.mp4"
    odd.write_bytes(b"")
    assert lift_positional([str(odd)]) == [f"input={quote_override(str(odd))}"]


def test_second_positional_is_an_error():
    with pytest.raises(UserError, match="only one input"):
        lift_positional(["a.mp4", "b.mp4"])


def test_device_names():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cpu", "cuda")
    with pytest.raises(UserError, match="unknown device"):
        pick_device("tpu:zero")
