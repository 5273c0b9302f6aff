"""Peak Python allocations of a call, for tests that pin memory use."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable


def traced_peak(f: Callable[[], object]) -> int:
    """Peak bytes allocated while ``f`` ran (NumPy arrays included)."""
    tracemalloc.start()
    try:
        f()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
