"""BLAS threads: one per decomposition, wherever it runs.

On a shared machine a second BLAS thread gains little when idle and collapses
when another process is busy, and results would depend on the thread count.
NumPy reads these variables only when it loads, so the command line sets them
(unless the user did) before anything imports NumPy. Imports nothing heavy.
"""

from __future__ import annotations

import os

BLAS_THREADS = 1
"""BLAS threads per decomposition, in every mode (see the module docstring)."""

THREAD_VARIABLES = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def default_thread_environment() -> None:
    """Set every thread variable the user has not set to :data:`BLAS_THREADS`."""
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(BLAS_THREADS))
