"""The one model type: X ~ W1 W2 ... WL HL, with a coefficient matrix per depth.

:class:`Model` is what the engine returns (its :class:`~mlnmf_cli.engine.DeepResult`
extends it), what ``model.npz`` holds (one model per decomposed matrix) and what
the experiments compare. :func:`chain` is the one place the product
W1 @ ... @ Wd is written (``_deep.chain`` is a copy left for the engine's rewrite;
call this one).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlnmf_cli.errors import ParameterError


def chain(mats: Sequence[np.ndarray], dtype: Any = None) -> np.ndarray:
    """Left-to-right product of a non-empty list of matrices; with ``dtype`` each
    matrix is converted to it first (float64: the product in double precision)."""
    if dtype is not None:
        mats = [np.asarray(M, dtype=dtype) for M in mats]
    out = mats[0]
    for M in mats[1:]:
        out = out @ M
    return out


@dataclass
class Model:
    """Features ``Ws`` (W1: m x r1, Wl: r(l-1) x rl) and coefficients ``Hs``.

    ``Hs[d-1]`` is the coefficient matrix of depth d, so that
    ``W1 @ ... @ Wd @ Hs[d-1]`` is the depth-d reconstruction.
    """

    Ws: list[np.ndarray]
    Hs: list[np.ndarray]

    def __iter__(self) -> Iterator[list[np.ndarray]]:
        """A model unpacks as ``Ws, Hs = model``."""
        return iter((self.Ws, self.Hs))

    @property
    def depth(self) -> int:
        return len(self.Ws)

    @property
    def H(self) -> np.ndarray:
        return self.Hs[-1]

    def check_depth(self, depth: int | None) -> int:
        """``depth`` as an int in 1..L (None: L), or :class:`ParameterError`."""
        L = len(self.Ws)
        if depth is None:
            return L
        if isinstance(depth, bool) or not isinstance(depth, numbers.Integral):
            raise ParameterError(f"depth must be an integer between 1 and {L}, got {depth!r}")
        if not 1 <= depth <= L:
            raise ParameterError(f"depth must be between 1 and {L}, got {depth}")
        return int(depth)

    def effective_features(self, depth: int | None = None, dtype: Any = None) -> np.ndarray:
        """W1 @ ... @ Wd (m x r_d); default the deepest. ``dtype``: see :func:`chain`."""
        d = self.check_depth(depth)
        return chain(self.Ws[:d], dtype)

    def coefficients(self, depth: int | None = None, dtype: Any = None) -> np.ndarray:
        """Hs[d-1] (r_d x n); default the deepest."""
        d = self.check_depth(depth)
        H = self.Hs[d - 1]
        return H if dtype is None else np.asarray(H, dtype=dtype)

    def reconstruct(self, depth: int | None = None, dtype: Any = None) -> np.ndarray:
        """W1 @ ... @ Wd @ Hs[d-1] (m x n); default the deepest. ``dtype``: see :func:`chain`."""
        d = self.check_depth(depth)
        return self.effective_features(d, dtype) @ self.Hs[d - 1]
