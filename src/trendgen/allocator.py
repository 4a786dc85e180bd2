"""Keep freed memory in the process instead of handing it back to the kernel after every large tensor.

glibc serves an allocation above its mmap threshold (at most 32 MiB by default) with a fresh `mmap` and
returns it on free, so every such tensor is paged in again, page by page, each time it is made. A CLIP
forward makes several per block (a ViT-B/32 MLP activation at batch 64 is 39 MiB): on 2 cores of an Intel
Xeon the image tower ran at 29 images/s with the default and 35 with the heap kept (docs/BENCHMARKS.md).
Every trendgen app raises both thresholds to 1 GiB at start; `TRENDGEN_MALLOC=default` leaves glibc as it is.
The cost: up to that much freed memory stays with the process rather than going back to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

__all__ = ["keep_freed_memory"]

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
THRESHOLD = 1 << 30


def keep_freed_memory(threshold: int = THRESHOLD) -> bool:
    """Raise glibc's mmap and trim thresholds to `threshold` bytes; False where that is not done (not
    Linux with glibc, or `TRENDGEN_MALLOC=default`)."""
    if not sys.platform.startswith("linux") or os.environ.get("TRENDGEN_MALLOC") == "default":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    done = bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(mallopt(M_TRIM_THRESHOLD, threshold))
    if not done:
        log.debug("mallopt refused the thresholds; glibc's defaults stay")
    return done
