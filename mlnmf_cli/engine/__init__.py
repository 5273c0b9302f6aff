"""Numerical core of mlnmf: single-layer and multilayer NMF on NumPy arrays.

Pure NumPy: no files, no printing; progress goes through a callback.
"""

from mlnmf_cli.engine import metrics
from mlnmf_cli.engine._api import DEFAULTS, DeepResult, NMFResult, factorize, factorize_deep
from mlnmf_cli.engine._validation import INITS, METHODS, SOLVERS

__all__ = [
    "DEFAULTS",
    "INITS",
    "METHODS",
    "SOLVERS",
    "DeepResult",
    "NMFResult",
    "factorize",
    "factorize_deep",
    "metrics",
]
