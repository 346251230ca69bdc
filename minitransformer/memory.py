"""Keep freed memory for reuse instead of returning it to the operating system.

A training step allocates the same large temporaries every time: activations of
(B, T, D), attention weights of (B, H, T, S), logits of (B, T, V). glibc's malloc serves a
request above its "mmap threshold" (128 KiB at first) with fresh pages from the kernel,
and returns them on free. Fresh pages cost a page fault each, 4 KiB at a time, on first
touch, so a step that re-requests its 100 MiB of temporaries pays tens of thousands of
page faults, every step. On the 2-core machine this project is measured on, that made the
NumPy attention core twice as slow at B=64, T=S=32 and whole training steps ~15% slower.

Raising the mmap and trim thresholds keeps freed blocks in the heap, where the next step's
identical requests find them already mapped. The cost is that the process holds on to its
peak memory. Only glibc (Linux) has mallopt; elsewhere this does nothing.
"""

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 512 * 2**20  # blocks below this come from the heap and stay mapped


def keep_freed_memory(threshold_bytes=THRESHOLD_BYTES):
    """Set glibc's mmap and trim thresholds; returns True when it could."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trim = mallopt(M_TRIM_THRESHOLD, 2 * threshold_bytes)
    mmap = mallopt(M_MMAP_THRESHOLD, threshold_bytes)
    return bool(trim and mmap)
