"""Learning one multilayer dictionary over a collection, and encoding new columns with it.

Arrays in, results out: no files. The engine is called through
:mod:`._shared` only, so a change of the engine's options or model type is one
edit there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlnmf_cli.collections import _shared
from mlnmf_cli.collections._shared import Options
from mlnmf_cli.collections.nnls import nnls
from mlnmf_cli.engine import metrics
from mlnmf_cli.errors import ParameterError

Progress = Callable[[str, int, float], Any]
_BLOCK_ELEMENTS = 1 << 20  # model pixels made at a time when measuring each image's error


def check_ranks(shape: tuple[int, int], ranks: Sequence[int], what: str = "images") -> None:
    """One clear line when the first rank exceeds the images or the pixels of each."""
    pixels, count = shape
    if ranks[0] > count:
        raise ParameterError(
            f"--ranks {','.join(map(str, ranks))} asks for {ranks[0]} components but the "
            f"collection has only {count} {what}: use ranks of at most {count}"
        )
    if ranks[0] > pixels:
        raise ParameterError(
            f"--ranks {','.join(map(str, ranks))} asks for {ranks[0]} components but each "
            f"image has only {pixels} values: use ranks of at most {pixels}"
        )


@dataclass
class Learned:
    """A dictionary learned over the columns of X, with what its report needs."""

    X: np.ndarray
    options: Options
    result: Any  # engine.DeepResult (the engine's model type)
    seconds: dict[str, float] = field(default_factory=dict)
    _column_errors: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def depth(self) -> int:
        return len(self.options.ranks)

    @property
    def Ws(self) -> list[np.ndarray]:
        return list(self.result.Ws)

    @property
    def Hs(self) -> list[np.ndarray]:
        return list(self.result.Hs)

    def features(self, depth: int) -> np.ndarray:
        """W1 ... W_depth (float64): the atoms at that depth, one column each."""
        return np.asarray(self.result.effective_features(depth), dtype=np.float64)

    def reconstruction(self, depth: int, columns: Any = slice(None)) -> np.ndarray:
        """The model's pixels at ``depth`` (float64), of the ``columns`` asked for."""
        H = np.asarray(self.Hs[depth - 1][:, columns], dtype=np.float64)
        return self.features(depth) @ H

    def column_errors(self, depth: int) -> np.ndarray:
        """Each image's own relative error at ``depth``, a block of columns at a time."""
        if depth in self._column_errors:
            return self._column_errors[depth]
        n = self.X.shape[1]
        step = max(1, _BLOCK_ELEMENTS // max(1, self.X.shape[0]))
        errors = np.concatenate(
            [
                column_errors(
                    self.X[:, j : j + step], self.reconstruction(depth, slice(j, j + step))
                )
                for j in range(0, n, step)
            ]
        )
        self._column_errors[depth] = errors
        return errors

    def depth_errors(self) -> list[dict[str, Any]]:
        """Per depth: rank, relative error, PSNR, greedy error and the rank's SVD floor."""
        rows = _shared.depth_rows(self.X, self.options, self.result)
        for row in rows:
            errs = self.column_errors(int(row["depth"]))
            row["median_image_error"] = float(np.median(errs))
            row["worst_image_error"] = float(errs.max())
        return rows

    def layer_stats(self) -> list[dict[str, Any]]:
        return _shared.layer_rows(self.X, self.options, self.result)


def column_errors(X: np.ndarray, R: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    d = X - R
    num = np.sqrt(np.einsum("ij,ij->j", d, d))
    den = np.sqrt(np.einsum("ij,ij->j", X, X))
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(num > 0, np.inf, 0.0))


def learn_matrix(X: np.ndarray, options: Options, progress: Progress | None = None) -> Learned:
    """Learn a multilayer dictionary over the columns of X (pixels x images)."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ParameterError(f"X must be a 2-D matrix (pixels x images), got shape {X.shape}")
    check_ranks(X.shape, options.ranks)
    start = time.perf_counter()
    result = _shared.factorize_deep(X, options, progress)
    seconds = {
        "factorize": time.perf_counter() - start,
        "greedy": float(result.seconds["greedy"]),
        "fine_tune": float(result.seconds["fine_tune"]),
    }
    return Learned(X=X, options=options, result=result, seconds=seconds)


@dataclass(frozen=True)
class Encoded:
    """Codes of new columns at one depth of a fixed dictionary."""

    depth: int
    H: np.ndarray  # r_depth x n
    reconstruction: np.ndarray  # pixels x n, float64
    relative_errors: np.ndarray  # per column
    n_iter: int
    converged: bool


def encode_matrix(
    Ws: Sequence[np.ndarray],
    X: np.ndarray,
    depth: int | None = None,
    *,
    max_iter: int | None = None,
    tol: float | None = None,
) -> Encoded:
    """Codes H >= 0 of the columns of X with W1 ... W_depth held fixed (default: deepest)."""
    L = len(Ws)
    d = L if depth is None else depth
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 1 <= d <= L:
        raise ParameterError(f"depth must be between 1 and {L}, got {depth!r}")
    W = np.asarray(Ws[0], dtype=np.float64)
    for Wl in Ws[1:d]:
        W = W @ np.asarray(Wl, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] != W.shape[0]:
        raise ParameterError(
            f"X must have {W.shape[0]} rows (the dictionary's pixels), got shape {X.shape}"
        )
    kwargs: dict[str, Any] = {}
    if max_iter is not None:
        kwargs["max_iter"] = max_iter
    if tol is not None:
        kwargs["tol"] = tol
    res = nnls(W, X, **kwargs)
    return Encoded(
        depth=int(d),
        H=res.H,
        reconstruction=W @ res.H,
        relative_errors=res.relative_errors,
        n_iter=res.n_iter,
        converged=res.converged,
    )


def sparsity(A: np.ndarray) -> float:
    return float(metrics.hoyer_sparsity(A))
