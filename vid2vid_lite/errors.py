"""User-facing errors.

A :class:`UserError` is a problem with what the user asked for (a missing file, a bad option,
a corrupt video).  The command-line entry points catch it, print its one-line message and exit
with status 2 without a traceback; set ``V2V_DEBUG=1`` to see the traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

EXIT_USER_ERROR = 2

F = TypeVar("F", bound=Callable[..., object])


class UserError(Exception):
    """An error caused by the user's input; its message says what is wrong and what to do."""


class InputDamaged(UserError):
    """An input that FFmpeg stopped decoding midway: the frames before the damage are good
    (``run on_error=keep`` writes them)."""


def ffmpeg_message(err: Exception) -> str:
    """FFmpeg's own words for a PyAV error, without PyAV's call details."""
    return getattr(err, "strerror", None) or str(err)


def debug_enabled() -> bool:
    return os.environ.get("V2V_DEBUG", "") not in ("", "0", "false", "False")


def report_user_errors(fn: F) -> F:
    """Decorate a CLI entry point: turn :class:`UserError` and Ctrl-C into a clean exit."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            if debug_enabled():
                raise
            print(f"error: {err}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        except Exception as err:
            # A PyAV (FFmpeg) error that no reader or writer turned into a UserError: still one line.
            if debug_enabled() or type(err).__module__.split(".")[0] != "av":
                raise
            where = getattr(err, "filename", None)
            print(f"error: {ffmpeg_message(err)}" + (f" ({where})" if where else ""), file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]
