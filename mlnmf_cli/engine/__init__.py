"""Numerical core of mlnmf: single-layer and multilayer NMF on NumPy arrays.

Pure NumPy: no files, no printing; progress goes through a callback.

The options (:mod:`.options`) import without NumPy; everything else is loaded
on first use, so that ``mlnmf --help`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mlnmf_cli.engine.options import (
    DEFAULTS,
    INITS,
    METHODS,
    SOLVERS,
    EngineOptions,
    check_ranks,
)

if TYPE_CHECKING:
    from mlnmf_cli.engine import metrics
    from mlnmf_cli.engine._api import DeepResult, NMFResult, encode, factorize, factorize_deep
    from mlnmf_cli.engine.model import Model, chain

_LAZY = {
    "DeepResult": "mlnmf_cli.engine._api",
    "NMFResult": "mlnmf_cli.engine._api",
    "encode": "mlnmf_cli.engine._api",
    "factorize": "mlnmf_cli.engine._api",
    "factorize_deep": "mlnmf_cli.engine._api",
    "Model": "mlnmf_cli.engine.model",
    "chain": "mlnmf_cli.engine.model",
}


def __getattr__(name: str) -> Any:
    if name == "metrics":
        return importlib.import_module("mlnmf_cli.engine.metrics")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlnmf_cli.engine' has no attribute {name!r}")


__all__ = [
    "DEFAULTS",
    "INITS",
    "METHODS",
    "SOLVERS",
    "DeepResult",
    "EngineOptions",
    "Model",
    "NMFResult",
    "chain",
    "check_ranks",
    "encode",
    "factorize",
    "factorize_deep",
    "metrics",
]
