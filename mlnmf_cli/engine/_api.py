"""Public entry points: :func:`factorize` (one layer) and :func:`factorize_deep`."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlnmf_cli.engine._deep import GREEDY_TOL, chain, normalize_columns, refit_coefficients
from mlnmf_cli.engine._deep import fine_tune as run_fine_tune
from mlnmf_cli.engine._init import initialize
from mlnmf_cli.engine._linalg import factor_relative_error
from mlnmf_cli.engine._single import MAX_SWEEPS, Callback, check_max_sweeps, solve
from mlnmf_cli.engine._validation import (
    check_matrix,
    check_parameters,
    check_rank,
    check_ranks,
)
from mlnmf_cli.errors import ParameterError

# Data whose largest magnitude is beyond 2**±SAFE_EXPONENT is factored at unit
# scale. Errors and Gram matrices square the data's scale, and factors of
# unbalanced scale (a small feature column with large coefficients) add up to
# 2**23 each way in float32 before a component counts as rounding noise, so
# float32 (range 2**±126) needs the data near 1; images in [0, 1] and 16-bit
# counts are never copied.
SAFE_EXPONENT = 16

DEFAULTS: dict[str, Any] = dict(
    method="nmf",
    solver="hals",
    init="nndsvda",
    max_iter=200,
    tol=1e-5,
    target_error=None,
    seed=0,
    fine_tune=True,
    fine_tune_iter=150,
    normalize=True,
    refit=True,
)


@dataclass(frozen=True)
class NMFResult:
    """One layer X ~ W H.

    ``errors[0]`` is the relative error ||X - W H|| / ||X|| of the
    initialisation and ``errors[i]`` the one after iteration i (float64).
    ``converged`` is True when the run stopped on ``tol`` or ``target_error``
    (not on ``max_iter`` or a callback's request).
    """

    W: np.ndarray
    H: np.ndarray
    errors: np.ndarray
    n_iter: int
    converged: bool
    seconds: float


@dataclass
class DeepResult:
    """A multilayer factorisation X ~ W1 W2 ... WL HL.

    ``Hs[d-1]`` is the coefficient matrix of depth d, so that
    ``W1 @ ... @ Wd @ Hs[d-1]`` is the depth-d reconstruction. ``errors`` and
    ``greedy_errors`` are relative to X at depths 1..L; ``layer_errors`` are the
    final layers' own fits ||H_{l-1} - W_l H_l|| / ||H_{l-1}|| (H_0 = X);
    ``layers`` holds each greedy layer's own :class:`NMFResult` (before the
    column normalisation and the refit).
    """

    Ws: list[np.ndarray]
    Hs: list[np.ndarray]
    ranks: tuple[int, ...]
    errors: list[float]
    greedy_errors: list[float]
    layer_errors: list[float]
    layers: list[NMFResult]
    fine_tune_errors: np.ndarray
    fine_tune_n_iter: int
    converged: bool
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def H(self) -> np.ndarray:
        return self.Hs[-1]

    def _check_depth(self, depth: int | None) -> int:
        L = len(self.Ws)
        if depth is None:
            return L
        if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)):
            raise ParameterError(f"depth must be an integer between 1 and {L}, got {depth!r}")
        if not 1 <= depth <= L:
            raise ParameterError(f"depth must be between 1 and {L}, got {depth}")
        return int(depth)

    def effective_features(self, depth: int | None = None) -> np.ndarray:
        """W1 @ ... @ Wd (m x r_d); default the deepest."""
        d = self._check_depth(depth)
        return chain(self.Ws[:d])

    def reconstruct(self, depth: int | None = None) -> np.ndarray:
        """W1 @ ... @ Wd @ Hs[d-1] (m x n); default the deepest."""
        d = self._check_depth(depth)
        return self.effective_features(d) @ self.Hs[d - 1]


def _to_unit_scale(A: np.ndarray) -> tuple[np.ndarray, int]:
    """(A * 2**-e, e) when A's largest magnitude is outside 2**-SAFE_EXPONENT ..
    2**SAFE_EXPONENT (else (A, 0)), so that it becomes about 1.

    NMF is scale-equivariant (a X ~ (a W) H), but the products with X overflow
    float32 from about 1e19 (float64 from about 1e150), Gram matrices of factors
    of unbalanced scale already from about 1e10 (2**33 measured), and tiny data
    underflows. The factorisation of 2**-e X, with 2**e shared back between W1 and
    the coefficients (:func:`_split`), is a factorisation of X with the same
    relative errors; a power of two scales exactly. Data in ordinary ranges
    (images in [0, 1]) is neither copied nor changed.
    """
    top = max(float(A.max()), -float(A.min()))
    if top == 0.0:
        return A, 0
    e = math.frexp(top)[1] - 1
    if abs(e) <= SAFE_EXPONENT:
        return A, 0
    return np.ldexp(A, -e), e


def _split(exponent: int) -> tuple[int, int]:
    """How 2**exponent is shared out when scaling back: (features, coefficients).
    Evenly, so that neither factor leaves the dtype's range before X would."""
    return exponent - exponent // 2, exponent // 2


def _rescaled(res: NMFResult, a: int, b: int) -> NMFResult:
    """``res`` with W multiplied by 2**a and H by 2**b."""
    if not (a or b):
        return res
    return dataclasses.replace(res, W=np.ldexp(res.W, a), H=np.ldexp(res.H, b))


def _check_common(
    method: str,
    solver: str,
    init: str,
    max_iter: int,
    tol: float,
    target_error: float | None,
    seed: int,
    callback: Callback,
) -> None:
    check_parameters(
        method=method,
        solver=solver,
        init=init,
        max_iter=max_iter,
        tol=tol,
        target_error=target_error,
        seed=seed,
        callback=callback,
    )


def _factorize_checked(
    X: np.ndarray,
    rank: int,
    *,
    method: str,
    solver: str,
    init: str,
    max_iter: int,
    tol: float,
    target_error: float | None,
    seed: int,
    callback: Callback,
    stage: str,
    extrapolate: bool = True,
    max_sweeps: int = MAX_SWEEPS,
) -> NMFResult:
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    W, H = initialize(X, rank, init, rng, solver, method)
    out = solve(
        X,
        W,
        H,
        method=method,
        solver=solver,
        max_iter=max_iter,
        tol=float(tol),
        target_error=None if target_error is None else float(target_error),
        callback=callback,
        stage=stage,
        extrapolate=extrapolate,
        max_sweeps=max_sweeps,
    )
    return NMFResult(
        W=out.W,
        H=out.H,
        errors=np.asarray(out.errors, dtype=np.float64),
        n_iter=out.n_iter,
        converged=out.converged,
        seconds=time.perf_counter() - start,
    )


def factorize(
    X: Any,
    rank: int,
    *,
    method: str = DEFAULTS["method"],
    solver: str = DEFAULTS["solver"],
    init: str = DEFAULTS["init"],
    max_iter: int = DEFAULTS["max_iter"],
    tol: float = DEFAULTS["tol"],
    target_error: float | None = DEFAULTS["target_error"],
    seed: int = DEFAULTS["seed"],
    callback: Callback = None,
    extrapolate: bool = True,
    max_sweeps: int = MAX_SWEEPS,
) -> NMFResult:
    """Factorise X (m x n) as W H with W (m x rank), H (rank x n) >= 0.

    Parameters
    ----------
    X : array_like, 2-D
        Non-negative for ``method="nmf"``; any sign for ``"semi"`` (W unconstrained).
        float32 stays float32, everything else becomes float64.
    rank : int
        1 <= rank <= min(m, n) (>= 2 for ``init="svd"``).
    method, solver, init : str
        One of :data:`METHODS`, :data:`SOLVERS`, :data:`INITS`.
    max_iter : int
        Iterations (>= 0; 0 returns the initialisation).
    tol : float
        Stop when an iteration lowers the relative error by less than ``tol``
        times its previous value.
    target_error : float, optional
        Stop as soon as the relative error is <= this.
    seed : int
        Seed of ``np.random.default_rng`` (random init, randomized SVD).
    callback : callable, optional
        ``callback("layer1", iteration, error)`` after each iteration; a True
        return stops the run.
    extrapolate, max_sweeps
        Solver knobs (HALS): Ang & Gillis's extrapolation on/off, and the cap on
        the inner sweeps per factor update (>= 1).

    Raises
    ------
    ParameterError
        For any invalid parameter or input, before any work starts.
    """
    _check_common(method, solver, init, max_iter, tol, target_error, seed, callback)
    A, exponent = _to_unit_scale(check_matrix(X, method))
    r = check_rank(rank, A.shape, init)
    res = _factorize_checked(
        A,
        r,
        method=method,
        solver=solver,
        init=init,
        max_iter=max_iter,
        tol=tol,
        target_error=target_error,
        seed=seed,
        callback=callback,
        stage="layer1",
        extrapolate=bool(extrapolate),
        max_sweeps=check_max_sweeps(max_sweeps),
    )
    return _rescaled(res, *_split(exponent))


def factorize_deep(
    X: Any,
    ranks: Sequence[int],
    *,
    layers: int | None = None,
    method: str = DEFAULTS["method"],
    solver: str = DEFAULTS["solver"],
    init: str = DEFAULTS["init"],
    max_iter: int = DEFAULTS["max_iter"],
    tol: float = DEFAULTS["tol"],
    target_error: float | None = DEFAULTS["target_error"],
    seed: int = DEFAULTS["seed"],
    callback: Callback = None,
    fine_tune: bool = DEFAULTS["fine_tune"],
    fine_tune_iter: int = DEFAULTS["fine_tune_iter"],
    normalize: bool = DEFAULTS["normalize"],
    refit: bool = DEFAULTS["refit"],
) -> DeepResult:
    """Factorise X as W1 W2 ... WL HL with ranks r1 >= r2 >= ... >= rL.

    Greedy layer-wise pretraining (layer l factors H_{l-1}, the previous
    layer's coefficients, with the same method, solver, init, max_iter, tol
    (at least ``GREEDY_TOL`` when fine-tuning follows) and target_error; with
    ``normalize`` W_l's columns are scaled to unit norm
    and the scale moved into H_l first; with ``refit`` and ``max_iter`` > 0,
    from the second layer on, H_l is then re-fitted to X itself with
    W1 ... Wl fixed, a convex non-negative least-squares step, so each layer's
    coefficients serve the data rather than only the previous layer; with
    ``max_iter=0`` the layers keep their initialisations), then, with
    ``fine_tune``, joint
    refinement of all factors on a weighted sum of every depth's error
    ||X - W1 ... Wd Hd|| (see ``_deep``) for up to ``fine_tune_iter`` rounds
    (stopping on ``tol`` or when the deepest error reaches ``target_error``).

    ``method="semi", init="svd", normalize=False, fine_tune=False, max_iter=0``
    is exactly the stacked Gillis-Kumar ``appr_seminmf`` pipeline.
    Callback stages are "layer1", ..., "layerL" and "fine-tune".
    """
    _check_common(method, solver, init, max_iter, tol, target_error, seed, callback)
    check_parameters(
        layers=layers,
        fine_tune=fine_tune,
        fine_tune_iter=fine_tune_iter,
        normalize=normalize,
        refit=refit,
    )
    A, exponent = _to_unit_scale(check_matrix(X, method))
    rs = check_ranks(ranks, A.shape, init, layers)
    L = len(rs)
    t0 = time.perf_counter()
    results: list[NMFResult] = []
    Ws: list[np.ndarray] = []
    Hs: list[np.ndarray] = []
    current = A
    greedy_tol = max(tol, GREEDY_TOL) if fine_tune and tol > 0 else tol
    for li, r in enumerate(rs):
        res = _factorize_checked(
            current,
            r,
            method=method,
            solver=solver,
            init=init,
            max_iter=max_iter,
            tol=greedy_tol,
            target_error=target_error,
            seed=seed,
            callback=callback,
            stage=f"layer{li + 1}",
        )
        results.append(res)
        W, H = res.W.copy(), res.H.copy()
        if normalize:
            normalize_columns([W], H)
        Ws.append(W)
        if refit and li > 0 and max_iter > 0:
            H = refit_coefficients(A, chain(Ws), H)
        Hs.append(H)
        current = H
    greedy_errors = [factor_relative_error(A, chain(Ws[: d + 1]), Hs[d]) for d in range(L)]
    t1 = time.perf_counter()
    ft_errors = np.asarray([greedy_errors[-1]], dtype=np.float64)
    ft_iter = 0
    converged = all(r.converged for r in results)
    greedy = (Ws, Hs)
    if fine_tune:
        ft = run_fine_tune(
            A,
            Ws,
            Hs,
            greedy_errors=greedy_errors,
            method=method,
            max_iter=fine_tune_iter,
            tol=float(tol),
            target_error=None if target_error is None else float(target_error),
            callback=callback,
            normalize=normalize,
        )
        Ws, Hs = ft.Ws, ft.Hs
        ft_errors = np.asarray(ft.errors, dtype=np.float64)
        ft_iter = ft.n_iter
        converged = ft.converged
    t2 = time.perf_counter()
    errors = [factor_relative_error(A, chain(Ws[: d + 1]), Hs[d]) for d in range(L)]
    if errors[-1] > greedy_errors[-1]:
        # Fine-tuning steers by errors from products, which cancel badly when the
        # factors dwarf the data (a Semi-NMF of rank above the data's); these exact
        # residuals keep the promise that it never ends worse than its start.
        (Ws, Hs), errors = greedy, greedy_errors
    inputs = [A, *Hs[:-1]]
    layer_errors = [factor_relative_error(inputs[d], Ws[d], Hs[d]) for d in range(L)]
    if exponent:
        a, b = _split(exponent)
        Ws[0] = np.ldexp(Ws[0], a)
        Hs = [np.ldexp(H, b) for H in Hs]
        # Layer 1 factors X itself; deeper layers factor coefficients, scaled by 2**b.
        results = [_rescaled(res, a if li == 0 else 0, b) for li, res in enumerate(results)]
    return DeepResult(
        Ws=Ws,
        Hs=Hs,
        ranks=rs,
        errors=errors,
        greedy_errors=greedy_errors,
        layer_errors=layer_errors,
        layers=results,
        fine_tune_errors=ft_errors,
        fine_tune_n_iter=ft_iter,
        converged=converged,
        seconds={"greedy": t1 - t0, "fine_tune": t2 - t1},
    )
