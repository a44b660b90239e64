"""Hydra configs of vid2vid_lite (a package so that ``pkg://vid2vid_lite.conf`` resolves)."""
