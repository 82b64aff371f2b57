"""Hand freed memory back to the operating system between the steps of a large job.

NumPy's large temporaries and Arrow's buffers are freed into allocator pools (glibc's heap
above its adaptive mmap threshold, Arrow's jemalloc/mimalloc pool) that keep the pages;
a long decide then holds the high-water mark of every step before it. Releasing them at
step boundaries keeps the resident set at what the current step needs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import cache

import pyarrow as pa


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return lib if lib is not None and hasattr(lib, "malloc_trim") else None


def release_memory() -> None:
    """Collect garbage, empty Arrow's pool and trim the C heap (glibc only; a no-op elsewhere)."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)


def use_system_arrow_pool() -> pa.MemoryPool:
    """Send Arrow's allocations to the C heap; returns the pool to restore afterwards.
    Arrow's own pools (mimalloc, jemalloc) keep freed segments for a while, which a long
    out-of-core job sees as growth with every shard it reads; the C heap is trimmed by
    ``release_memory``."""
    before = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    return before
