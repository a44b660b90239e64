"""Keep freed memory in the process: glibc ``malloc`` settings for per-frame work (Linux).

By default glibc serves every large block (from 128 KiB, a threshold that adapts) with its own
``mmap`` and hands it back to the kernel on ``free``; the next allocation maps it again and the
kernel zeroes every page.  A network's activations are such blocks, made and freed on every
frame: on this project's 2-core machine that was 1.3 s of system time in a 3.4 s ``run`` of 250
frames at 256x256, and ``run`` went from 78 to 94 fps without it (docs/BENCHMARKS.md).  Keeping
freed blocks for reuse (what jemalloc and tcmalloc do, as PyTorch's CPU performance guide
recommends) removes that cost; the price is that memory a pass freed stays with the process for
the next pass instead of going back to the system.

Freed memory is kept per malloc arena, and glibc gives threads that allocate at the same time
arenas of their own, up to eight a core.  ``run`` has many short-lived threads (decoding,
encoding each part, flow, model workers): with an arena each, every arena keeps the blocks its
threads freed, and the process grew for thousands of translations before it levelled off
(tools/soak.py: +5.9 % of memory over 20 minutes, +0.6 % with one arena a core).  So the arenas
are capped at one a core.

``run``, ``train`` and the benchmark call :func:`keep_freed_memory` once at start.  Other C
libraries (musl) and other systems are left as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: Blocks below this come from the heap (reused) rather than their own mmap: glibc's maximum on
#: 64-bit systems (32 MiB), above any activation of the bundled models up to 1024x512 frames.
MMAP_THRESHOLD = 32 << 20
#: Free memory at the top of the heap is returned to the system only beyond this.
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Tell glibc to keep freed blocks for reuse; True if it took (False off glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # no libc found, or one without mallopt (musl)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    arenas = max(2, os.cpu_count() or 2)
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_ARENA_MAX, arenas))
    return all([bool(mallopt(param, value)) for param, value in settings])
