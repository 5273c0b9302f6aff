"""Public entry points: :func:`factorize` (one layer) and :func:`factorize_deep`."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlnmf_cli.engine._deep import GREEDY_TOL, normalize_columns, refit_coefficients
from mlnmf_cli.engine._deep import fine_tune as run_fine_tune
from mlnmf_cli.engine._init import initialize
from mlnmf_cli.engine._linalg import factor_relative_error
from mlnmf_cli.engine._single import encode as _encode
from mlnmf_cli.engine._single import solve
from mlnmf_cli.engine._validation import check_matrix
from mlnmf_cli.engine.model import Model, chain
from mlnmf_cli.engine.options import (
    DEFAULTS,
    Callback,
    EngineOptions,
    Integer,
    Notify,
    check_rank,
    check_ranks,
    notifier,
)
from mlnmf_cli.errors import ParameterError

# Data whose largest magnitude is beyond 2**±SAFE_EXPONENT is factored at unit
# scale. Errors and Gram matrices square the data's scale, and factors of
# unbalanced scale (a small feature column with large coefficients) add up to
# 2**23 each way in float32 before a component counts as rounding noise, so
# float32 (range 2**±126) needs the data near 1; images in [0, 1] and 16-bit
# counts are never copied.
SAFE_EXPONENT = 16


@dataclass(frozen=True)
class NMFResult:
    """One layer X ~ W H.

    ``history[0]`` is the relative error ||X - W H|| / ||X|| of the
    initialisation and ``history[i]`` the one after iteration i (float64).
    ``converged`` is True when the run stopped on ``tol`` or ``target_error``
    (not on ``max_iter`` or a callback's request).
    """

    W: np.ndarray
    H: np.ndarray
    history: np.ndarray
    n_iter: int
    converged: bool
    seconds: float


@dataclass
class DeepResult(Model):
    """A multilayer factorisation X ~ W1 W2 ... WL HL: a :class:`Model` and how it was found.

    ``depth_errors`` and ``greedy_errors`` are the relative errors of the model
    at depths 1..L, after and before fine-tuning; ``layer_errors`` are the
    final layers' own fits ||H_{l-1} - W_l H_l|| / ||H_{l-1}|| (H_0 = X);
    ``layers`` holds each greedy layer's own :class:`NMFResult` (before the
    column normalisation and the refit); ``fine_tune_history`` the fine-tuning's
    relative error per iteration (its start first).
    """

    ranks: tuple[int, ...] = ()
    depth_errors: list[float] = field(default_factory=list)
    greedy_errors: list[float] = field(default_factory=list)
    layer_errors: list[float] = field(default_factory=list)
    layers: list[NMFResult] = field(default_factory=list)
    fine_tune_history: np.ndarray = field(default_factory=lambda: np.zeros(0))
    fine_tune_n_iter: int = 0
    converged: bool = False
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def model(self) -> Model:
        return Model(self.Ws, self.Hs)


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


def _factorize_checked(
    X: np.ndarray, rank: int, opts: EngineOptions, callback: Notify | None, stage: str
) -> NMFResult:
    start = time.perf_counter()
    rng = np.random.default_rng(opts.seed)
    W, H = initialize(X, rank, opts.init, rng, opts.solver, opts.method)
    out = solve(
        X,
        W,
        H,
        method=opts.method,
        solver=opts.solver,
        max_iter=opts.max_iter,
        tol=float(opts.tol),
        target_error=None if opts.target_error is None else float(opts.target_error),
        callback=callback,
        stage=stage,
        extrapolate=opts.extrapolate,
        max_sweeps=opts.max_sweeps,
    )
    return NMFResult(
        W=out.W,
        H=out.H,
        history=np.asarray(out.errors, dtype=np.float64),
        n_iter=out.n_iter,
        converged=out.converged,
        seconds=time.perf_counter() - start,
    )


def _options(options: EngineOptions | None, params: dict[str, Any]) -> EngineOptions:
    """``options`` with ``params`` changed (or the defaults with them), validated."""
    base = DEFAULTS if options is None else options
    if not isinstance(base, EngineOptions):
        raise ParameterError(f"options must be EngineOptions, got {type(base).__name__}")
    try:
        return dataclasses.replace(base, **params) if params else base
    except TypeError as exc:
        raise TypeError(f"unknown engine option: {exc}") from None


def _check_callback(callback: Any) -> None:
    if callback is not None and not callable(callback):
        raise ParameterError(f"callback must be callable or None, got {callback!r}")


def factorize(
    X: Any,
    rank: int,
    *,
    options: EngineOptions | None = None,
    callback: Callback = None,
    **params: Any,
) -> NMFResult:
    """Factorise X (m x n) as W H with W (m x rank), H (rank x n) >= 0.

    Parameters
    ----------
    X : array_like, 2-D
        Non-negative for ``method="nmf"``; any sign for ``"semi"`` (W unconstrained).
        float32 stays float32, everything else becomes float64.
    rank : int
        1 <= rank <= min(m, n) (>= 2 for ``init="svd"``).
    options : EngineOptions, optional
        Every option at once (default :data:`DEFAULTS`); ``params`` change single ones.
    callback : callable, optional
        ``callback("layer1", iteration, error)`` after each iteration; a True
        return stops the run (see :data:`~mlnmf_cli.engine.options.Callback`).
    **params
        Any :class:`EngineOptions` field: ``method``, ``solver``, ``init``,
        ``max_iter`` (0 returns the initialisation), ``tol`` (stop when an
        iteration lowers the relative error by less than ``tol`` times its
        previous value), ``target_error`` (stop as soon as the relative error
        is <= this), ``seed`` (of ``np.random.default_rng``). The options of
        the deep model (``fine_tune``, ...) are accepted and not used.

    Raises
    ------
    ParameterError
        For any invalid parameter or input, before any work starts.
    """
    opts = _options(options, params)
    _check_callback(callback)
    notify = notifier(callback)
    A, exponent = _to_unit_scale(check_matrix(X, opts.method))
    r = check_rank(rank, A.shape, opts.init)
    res = _factorize_checked(A, r, opts, notify, "layer1")
    return _rescaled(res, *_split(exponent))


def factorize_deep(
    X: Any,
    ranks: Sequence[int],
    *,
    layers: int | None = None,
    options: EngineOptions | None = None,
    callback: Callback = None,
    **params: Any,
) -> DeepResult:
    """Factorise X as W1 W2 ... WL HL with ranks r1 >= r2 >= ... >= rL.

    ``options`` / ``params`` as in :func:`factorize`; ``layers``, when given,
    must equal ``len(ranks)``.

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
    is the stacked Gillis-Kumar ``appr_seminmf`` pipeline of the 2017 write-up; where
    singular values tie (from depth 2 on) the subspace is not unique, and the
    choice within each tied group is drawn from ``seed`` (the write-up's ARPACK
    start was random too; see benchmarks/results/like_seed.json for both spreads).
    Callback stages are "layer1", ..., "layerL" and "fine-tune".
    """
    opts = _options(options, params)
    _check_callback(callback)
    notify = notifier(callback)
    Integer(1, optional=True).check("layers", layers)
    A, exponent = _to_unit_scale(check_matrix(X, opts.method))
    rs = check_ranks(ranks, A.shape, opts.init, layers)
    L = len(rs)
    t0 = time.perf_counter()
    results: list[NMFResult] = []
    Ws: list[np.ndarray] = []
    Hs: list[np.ndarray] = []
    current = A
    # A looser greedy stage when fine-tuning follows (it refines every depth anyway).
    greedy_tol = max(opts.tol, GREEDY_TOL) if opts.fine_tune and opts.tol > 0 else opts.tol
    layer_opts = dataclasses.replace(opts, tol=greedy_tol)
    for li, r in enumerate(rs):
        res = _factorize_checked(current, r, layer_opts, notify, f"layer{li + 1}")
        results.append(res)
        W, H = res.W.copy(), res.H.copy()
        if opts.normalize:
            normalize_columns([W], H)
        Ws.append(W)
        if opts.refit and li > 0 and opts.max_iter > 0:
            H = refit_coefficients(A, chain(Ws), H)
        Hs.append(H)
        current = H
    greedy_errors = [factor_relative_error(A, chain(Ws[: d + 1]), Hs[d]) for d in range(L)]
    t1 = time.perf_counter()
    ft_history = np.asarray([greedy_errors[-1]], dtype=np.float64)
    ft_iter = 0
    converged = all(r.converged for r in results)
    greedy = (Ws, Hs)
    if opts.fine_tune:
        ft = run_fine_tune(
            A,
            Ws,
            Hs,
            greedy_errors=greedy_errors,
            method=opts.method,
            max_iter=opts.fine_tune_iter,
            tol=float(opts.tol),
            target_error=None if opts.target_error is None else float(opts.target_error),
            callback=notify,
            normalize=opts.normalize,
            deep_weight=float(opts.deep_weight),
            extrapolate=opts.extrapolate,
        )
        Ws, Hs = ft.Ws, ft.Hs
        ft_history = np.asarray(ft.errors, dtype=np.float64)
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
        depth_errors=errors,
        greedy_errors=greedy_errors,
        layer_errors=layer_errors,
        layers=results,
        fine_tune_history=ft_history,
        fine_tune_n_iter=ft_iter,
        converged=converged,
        seconds={"greedy": t1 - t0, "fine_tune": t2 - t1},
    )


def encode(
    X: Any, W: Any, *, max_sweeps: int = 200, tol: float = 1e-4, H0: Any = None
) -> np.ndarray:
    """Coefficients of new data with the features held fixed: argmin_{H >= 0} ||X - W H||.

    X is m x n (non-negative for an NMF dictionary, any sign for a Semi-NMF
    one), W is m x r (an effective dictionary W1 ... Wd for depth d); returns H
    (r x n) in X's dtype (float32 stays float32). A convex problem, solved by
    HALS sweeps over H's rows with W^T X and W^T W computed once; it stops
    after ``max_sweeps`` sweeps or when a sweep changes H by less than ``tol``
    times the first one's change. ``H0`` warm-starts it.
    """
    A = check_matrix(X, "semi")
    D = check_matrix(W, "semi")
    if D.shape[0] != A.shape[0]:
        raise ParameterError(
            f"W must have as many rows as X ({A.shape[0]}), got shape {tuple(D.shape)}"
        )
    Integer(1).check("max_sweeps", max_sweeps)
    if H0 is not None:
        H0 = check_matrix(H0, "semi")
        if H0.shape != (D.shape[1], A.shape[1]):
            raise ParameterError(
                f"H0 must have shape {(D.shape[1], A.shape[1])}, got {tuple(H0.shape)}"
            )
    return _encode(A, D, H0=H0, max_sweeps=int(max_sweeps), tol=float(tol))
