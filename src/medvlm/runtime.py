"""Process-wide settings for CPU work: glibc's malloc keeps freed memory for reuse.

A training step of a small model allocates and frees the same few-megabyte tensors hundreds of times. With
glibc's defaults, blocks above the (adaptive) mmap threshold get a fresh mapping and memory freed at the top of
the heap goes back to the OS, so nearly every new activation touches fresh pages: about 4,000 page faults and
10.6 ms of kernel time per step of the demo's language model on 2 cores. Raising both thresholds keeps that
memory in the heap: 32 faults and 1.7 ms per step, the step x1.17 faster, the peak resident memory the same
(benchmarks/allocator_speed.py, medians of 6 rounds of fresh processes). The cost: memory freed by the process is
returned to the OS later or not at all, which suits a training or prediction process, not every program;
so the `medvlm` command calls `keep_freed_memory()` at start, and `import medvlm` does not.

Set MEDVLM_MALLOC_TUNING=0 to keep glibc's defaults. Elsewhere than Linux with glibc nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

ENV = "MEDVLM_MALLOC_TUNING"
M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 << 20  # blocks at least this large still get their own mapping, returned to the OS when freed
TRIM_THRESHOLD = 1 << 30  # free memory at the top of the heap is kept up to this much


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (above) for this process; True when they were set. Call it before the
    work starts (it applies to later allocations). Nothing happens when MEDVLM_MALLOC_TUNING=0, or off glibc."""
    if os.environ.get(ENV, "1").strip() == "0" or not sys.platform.startswith("linux"):
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # setting M_MMAP_THRESHOLD also stops glibc from adapting it (and the trim threshold) to the program
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
