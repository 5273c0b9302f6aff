"""Single-layer solvers on arrays: accelerated HALS, multiplicative updates, Semi-NMF.

Everything works on W transposed (``Wt``, r x m) so that the W and H updates
are the same sweep over contiguous rows: for V (r x p) fitted with the fixed
factor U (r x q) in ``Xo ~ V^T U``, the sweep needs only P = U Xo^T and
G = U U^T.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mlnmf_cli.engine._linalg import relative_error_from_products, squared_norm
from mlnmf_cli.engine.options import DEFAULTS, Notify
from mlnmf_cli.errors import ParameterError

ALPHA = 0.5
DELTA = 0.1
# Rows per block of a sweep: within a block each row is one short matrix-vector
# product (b^2 / 2 rows of V read per block), outside it one matrix product per
# block. Measured at rank 64 (benchmarks, same process, same iterations): 16 is
# 8-12% faster to scikit-learn's error than 32 on 512x512 photos, the same on
# the small matrices (rank <= 16 is one block either way).
BLOCK = 16
BETA0, ETA, GAMMA, GAMMA_BAR = 0.5, 1.5, 1.05, 1.01
PATIENCE = 5
MAX_SWEEPS = DEFAULTS.max_sweeps  # the cap on the sweeps per update (options.py says why)
# NumPy's C dot without the __array_function__ dispatch in front of it: on the
# short rows of a sweep that dispatch is half the cost of the call (0.74 -> 0.36
# us for an 8 x 64 row block), and a sweep is two calls per row.
_dot = getattr(np.dot, "_implementation", np.dot)


class RowSweeper:
    """Block-sequential HALS sweeps over the rows of V (r x p), in place.

    Within a block of rows the coordinate updates are sequential (exact HALS);
    the contribution of the rows outside the block is one matrix product per
    block, and the rows inside it one short matrix-vector product per row, so
    a sweep reads V about r / BLOCK times instead of r times.
    """

    def __init__(self, V: np.ndarray, block: int = BLOCK) -> None:
        r, p = V.shape
        self.V = V
        self.dtype = V.dtype
        self.zero = V.dtype.type(0)
        # max(row, 0) against a row of zeros: a scalar 0 costs the ufunc a conversion
        # per call (0.55 -> 0.32 us for a row of 100, 0.79 -> 0.42 us for 512).
        self.zeros = np.zeros(p, V.dtype)
        self.Gm = np.empty((r, r), V.dtype)
        self.C = np.zeros((r, min(block, r)), V.dtype)
        self.Ps = np.empty_like(V)
        self.T = np.empty((min(block, r), p), V.dtype)
        self.buf = np.empty(p, V.dtype)
        self.prev = np.empty_like(V)
        info = np.finfo(V.dtype)
        self.eps2, self.tiny = float(info.eps) ** 2, float(info.tiny)
        self.blocks: list[tuple[int, int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]] = []
        # Per block, the views one sweep uses: Gm's rows, T, Ps's rows, V's rows,
        # V's first row of the block, and the rows' (C row, V head, V row).
        self.views: list[tuple[np.ndarray, ...]] = []
        # Per block: the C view (identity above the strict lower triangle, which
        # update() refills with -G), the same-shaped Gm view, and the masks of the
        # strict lower triangle and of the lower triangle with the diagonal.
        self.masks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for k0 in range(0, r, block):
            k1 = min(k0 + block, r)
            b = k1 - k0
            rows = [(self.C[k, : k - k0 + 1], V[k0 : k + 1], V[k]) for k in range(k0 + 1, k1)]
            self.blocks.append((k0, k1, rows))
            self.views.append(
                (self.Gm[k0:k1], self.T[:b], self.Ps[k0:k1], V[k0:k1], V[k0], rows)  # type: ignore[arg-type]
            )
            Cb = self.C[k0:k1, :b]
            Cb[...] = np.eye(b, dtype=self.dtype)
            lower = np.tri(b, k=-1, dtype=bool)
            self.masks.append((Cb, self.Gm[k0:k1, k0:k1], lower, np.tri(b, dtype=bool)))

    def update(self, P: np.ndarray, G: np.ndarray, max_sweeps: int, delta: float) -> int:
        """Run up to ``max_sweeps`` sweeps; stop when a sweep changes V by less than
        ``delta`` times the first sweep's change. Returns the number of sweeps.

        A row whose G[k, k] is 0 or below eps^2 times the largest (a component
        whose norm is below rounding level next to the largest one's) takes a
        projected gradient step of length 1 / (largest diagonal) instead of
        the exact coordinate minimum: no overflow from fitting rounding noise
        with huge coefficients, and, as the step is no longer than
        1 / G[k, k], the loss still cannot rise. In the sweep's formula
        v_k = max(0, P_k / d_k - sum_j G_kj v_j / d_k) this is the diagonal
        term G_kk / d_k - 1 (0 for an exact row) applied to the old v_k.
        Components that are merely small (norms down to eps times the
        largest) keep the exact update.
        """
        V, Gm = self.V, self.Gm
        g = G.diagonal()
        top = float(g.max(initial=0.0))
        short = None
        if top <= self.tiny:
            d = np.ones_like(g)
            short = np.flatnonzero(d != g)
        elif float(g.min()) <= top * self.eps2:
            d = g.copy()
            d[d <= top * self.eps2] = top
            short = np.flatnonzero(d != g)
        else:
            d = g
        inv = (1.0 / d)[:, None]
        np.multiply(G, inv, out=Gm)
        np.multiply(P, inv, out=self.Ps)
        for Cb, Gbb, lower, lower_diag in self.masks:
            np.negative(Gbb, out=Cb, where=lower)
            np.copyto(Gbb, self.zero, where=lower_diag)
        if short is not None and short.size:
            Gm[short, short] = g[short] / d[short] - 1
        first = 0.0
        s = 0
        # The change is measured on every sweep but the last allowed one, and not at
        # all without a ``delta`` (the blocked solver's fixed sweep counts).
        last = max_sweeps - 1 if delta > 0 else 0
        for s in range(max_sweeps):
            if s < last:
                np.copyto(self.prev, V)
            self._sweep()
            if s < last:
                np.subtract(V, self.prev, out=self.prev)
                change = float(np.vdot(self.prev, self.prev))
                if s == 0:
                    first = change
                elif change <= delta * delta * first:
                    break
        return s + 1

    def _sweep(self) -> None:
        V, buf, zeros = self.V, self.buf, self.zeros
        dot, maximum, subtract = _dot, np.maximum, np.subtract
        for Gm_rows, T, Ps_rows, V_rows, first, rows in self.views:
            dot(Gm_rows, V, out=T)
            subtract(Ps_rows, T, out=V_rows)
            maximum(first, zeros, out=first)
            for c, head, row in rows:
                dot(c, head, out=buf)
                maximum(buf, zeros, out=row)


@dataclass
class SolveOutput:
    W: np.ndarray
    H: np.ndarray
    errors: list[float] = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False


def n_sweeps(p: int, q: int, r: int, alpha: float = ALPHA, max_sweeps: int = MAX_SWEEPS) -> int:
    """Gillis & Glineur's bound: 1 + alpha * (cost of the products / cost of a sweep),
    at most ``max_sweeps``."""
    return max(1, min(max_sweeps, 1 + math.ceil(alpha * (q / r + q / p))))


def check_max_sweeps(max_sweeps: object) -> int:
    """``max_sweeps`` as an int >= 1, or a ParameterError naming it."""
    if isinstance(max_sweeps, bool) or not isinstance(max_sweeps, (int, np.integer)):
        raise ParameterError(f"max_sweeps must be an integer >= 1, got {max_sweeps!r}")
    if max_sweeps < 1:
        raise ParameterError(f"max_sweeps must be an integer >= 1, got {max_sweeps}")
    return int(max_sweeps)


def encode(
    X: np.ndarray,
    W: np.ndarray,
    *,
    H0: np.ndarray | None = None,
    max_sweeps: int = 200,
    tol: float = 1e-4,
) -> np.ndarray:
    """Coefficients of new data with fixed features: argmin_{H >= 0} ||X - W H||.

    X is m x n, W m x r (any sign: the update of H is the same for a Semi-NMF
    dictionary); returns H (r x n) in X's dtype. HALS sweeps over the
    rows of H with W^T X and W^T W computed once (Cichocki & Phan), from ``H0``
    (clipped at 0) or from the unconstrained least-squares solution clipped at 0;
    stops after ``max_sweeps`` sweeps or when a sweep changes H by less than
    ``tol`` times the first sweep's change (a convex problem: the sweeps converge
    to its minimum). Dead features (zero columns of W) get zero coefficients.
    """
    X = np.asarray(X)
    W = np.asarray(W, dtype=X.dtype)
    WtX = W.T @ X
    WtW = W.T @ W
    if H0 is None:
        H = np.maximum(_least_squares(WtW, WtX), 0)
    else:
        H = np.maximum(np.asarray(H0, dtype=X.dtype), 0)
    H = np.ascontiguousarray(H)
    dead = np.diagonal(WtW) <= 0
    H[dead] = 0
    if not np.any(W):
        return H
    RowSweeper(H).update(WtX, WtW, max_sweeps, tol)
    return H


def _revive(
    V: np.ndarray,
    U: np.ndarray,
    P: np.ndarray,
    G: np.ndarray,
    Xo: np.ndarray,
    rowsq: np.ndarray,
    nonneg: bool,
) -> None:
    """Give each dead component (zero row k of U) the residual of a worst-fitted row of Xo.

    V[k] is set to 0 first, so the loss is unchanged and the next exact sweep
    can only lower it. P = U Xo^T and G = U U^T are patched to match.
    """
    dead = np.flatnonzero(np.diagonal(G) <= 0)
    if dead.size == 0:
        return
    V64 = V.astype(np.float64)
    fit = 2.0 * np.einsum("ki,ki->i", V64, P.astype(np.float64))
    fit -= np.einsum("ki,ki->i", V64, G.astype(np.float64) @ V64)
    resid = rowsq - fit
    order = np.argsort(-resid, kind="stable")
    for k, i in zip(dead, order[: dead.size], strict=False):
        if resid[i] <= 0:
            break
        u = Xo[i] - V[:, i] @ U
        if nonneg:
            np.maximum(u, 0, out=u)
        if not np.any(u):
            continue
        V[k] = 0
        U[k] = u
        P[k] = Xo @ u
        g = U @ u
        G[k, :] = g
        G[:, k] = g


def solve(
    X: np.ndarray,
    W: np.ndarray,
    H: np.ndarray,
    *,
    method: str,
    solver: str,
    max_iter: int,
    tol: float,
    target_error: float | None,
    callback: Notify | None,
    stage: str,
    alpha: float = ALPHA,
    delta: float = DELTA,
    extrapolate: bool = True,
    max_sweeps: int = MAX_SWEEPS,
) -> SolveOutput:
    """Iterate from (W, H); returns the final factors and the relative-error history.

    ``extrapolate`` switches Ang & Gillis's extrapolation on (HALS, NMF);
    ``max_sweeps`` caps the inner HALS sweeps per factor update (the number
    used is :func:`n_sweeps`'s cost bound, at most this).
    """
    m, n = X.shape
    r = W.shape[1]
    dtype = X.dtype
    Wt = np.ascontiguousarray(W.T)
    H = np.ascontiguousarray(H).copy()
    normX2 = squared_norm(X)
    HHt = H @ H.T
    WtX = Wt @ X
    WtW = Wt @ Wt.T
    out = SolveOutput(W, H)
    out.errors.append(relative_error_from_products(normX2, WtX, H, WtW, HHt, X, Wt.T))
    if max_iter == 0 or normX2 == 0.0:
        out.converged = normX2 == 0.0
        if normX2 == 0.0:
            Wt[...] = 0
            H[...] = 0
            out.errors[0] = 0.0
        out.W, out.H = np.ascontiguousarray(Wt.T), H
        return out
    semi = method == "semi"
    hals = solver == "hals"
    if hals and not semi and extrapolate:
        _solve_extrapolated(
            X,
            Wt,
            H,
            out,
            normX2,
            max_iter=max_iter,
            tol=tol,
            target_error=target_error,
            callback=callback,
            stage=stage,
            alpha=alpha,
            delta=delta,
            max_sweeps=max_sweeps,
        )
        return out
    Pw = np.empty((r, m), dtype)
    sweep_w = RowSweeper(Wt) if hals and not semi else None
    sweep_h = RowSweeper(H) if hals else None
    nsw_w = n_sweeps(m, n, r, alpha, max_sweeps)
    nsw_h = n_sweeps(n, m, r, alpha, max_sweeps)
    rowsq: np.ndarray | None = None
    colsq: np.ndarray | None = None
    tiny = np.finfo(dtype).tiny
    for it in range(1, max_iter + 1):
        np.dot(H, X.T, out=Pw)
        if semi:
            Wt = _least_squares(HHt, Pw)
        elif hals:
            assert sweep_w is not None
            if HHt.diagonal().min() <= 0:
                if rowsq is None:
                    rowsq = np.einsum("ij,ij->i", X, X, dtype=np.float64)
                _revive(Wt, H, Pw, HHt, X, rowsq, nonneg=True)
            sweep_w.update(Pw, HHt, nsw_w, delta)
        else:
            denom = HHt @ Wt
            np.maximum(denom, tiny, out=denom)
            Wt *= Pw
            Wt /= denom
        np.dot(Wt, X, out=WtX)
        np.dot(Wt, Wt.T, out=WtW)
        if hals:
            assert sweep_h is not None
            if WtW.diagonal().min() <= 0:
                if colsq is None:
                    colsq = np.einsum("ij,ij->j", X, X, dtype=np.float64)
                _revive(H, Wt, WtX, WtW, X.T, colsq, nonneg=not semi)
            sweep_h.update(WtX, WtW, nsw_h, delta)
        elif semi:
            _dlj_update(H, WtX, WtW, tiny)
        else:
            denom = WtW @ H
            np.maximum(denom, tiny, out=denom)
            H *= WtX
            H /= denom
        np.dot(H, H.T, out=HHt)
        err = relative_error_from_products(normX2, WtX, H, WtW, HHt, X, Wt.T)
        out.errors.append(err)
        out.n_iter = it
        if _should_stop(out, it, err, tol, target_error, callback, stage, _copies(Wt, H)):
            break
    out.W, out.H = np.ascontiguousarray(Wt.T), H
    return out


def _copies(Wt: np.ndarray, H: np.ndarray) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    """What a callback's ``factors()`` returns during a layer: copies of (W, H)."""
    return lambda: (Wt.T.copy(), H.copy())


def _should_stop(
    out: SolveOutput,
    it: int,
    err: float,
    tol: float,
    target_error: float | None,
    callback: Notify | None,
    stage: str,
    factors: Callable[[], tuple[np.ndarray, np.ndarray]],
) -> bool:
    """Report the iteration; decide whether to stop (sets ``out.converged``).

    Converged when the target is reached, the error is 0, or the relative
    improvement per iteration, averaged over the last PATIENCE iterations
    (fewer at the start), is at most ``tol``.
    """
    stop = callback(stage, it, err, factors) if callback is not None else False
    k = min(it, PATIENCE)
    old = out.errors[-1 - k]
    if (
        (target_error is not None and err <= target_error)
        or err == 0.0
        or (old - err <= k * tol * old)
    ):
        out.converged = True
        return True
    return stop


def _solve_extrapolated(
    X: np.ndarray,
    Wt: np.ndarray,
    H: np.ndarray,
    out: SolveOutput,
    normX2: float,
    *,
    max_iter: int,
    tol: float,
    target_error: float | None,
    callback: Notify | None,
    stage: str,
    alpha: float,
    delta: float,
    max_sweeps: int,
) -> None:
    """Accelerated HALS with extrapolation and restart (Ang & Gillis, 2019).

    Each factor is updated by HALS sweeps against the other factor's
    extrapolated point Y = max(0, new + beta (new - old)); when the error of
    the extrapolated pair grows, the extrapolation is dropped for one step and
    beta shrinks, otherwise beta grows up to a slowly rising cap. The best
    feasible pair seen is kept, so the reported history is non-increasing.
    """
    m, n = X.shape
    r = Wt.shape[0]
    dtype = X.dtype
    Wy, Hy = Wt.copy(), H.copy()
    Wprev, Hprev = np.empty_like(Wt), np.empty_like(H)
    bestW, bestH = Wt.copy(), H.copy()
    Pw = np.empty((r, m), dtype)
    Ph = np.empty((r, n), dtype)
    G = np.empty((r, r), dtype)
    HHt = Hy @ Hy.T
    sweep_w, sweep_h = RowSweeper(Wt), RowSweeper(H)
    nsw_w = n_sweeps(m, n, r, alpha, max_sweeps)
    nsw_h = n_sweeps(n, m, r, alpha, max_sweeps)
    rowsq: np.ndarray | None = None
    colsq: np.ndarray | None = None
    momentum = Momentum()
    best = prev_y = out.errors[0]
    for it in range(1, max_iter + 1):
        np.dot(Hy, X.T, out=Pw)
        if HHt.diagonal().min() <= 0:
            if rowsq is None:
                rowsq = np.einsum("ij,ij->i", X, X, dtype=np.float64)
            _revive(Wt, Hy, Pw, HHt, X, rowsq, nonneg=True)
        np.copyto(Wprev, Wt)
        sweep_w.update(Pw, HHt, nsw_w, delta)
        _extrapolate(Wt, Wprev, momentum.beta, Wy)
        np.dot(Wy, X, out=Ph)
        np.dot(Wy, Wy.T, out=G)
        if G.diagonal().min() <= 0:
            if colsq is None:
                colsq = np.einsum("ij,ij->j", X, X, dtype=np.float64)
            _revive(H, Wy, Ph, G, X.T, colsq, nonneg=True)
        np.copyto(Hprev, H)
        sweep_h.update(Ph, G, nsw_h, delta)
        HnHn = H @ H.T
        err_n = relative_error_from_products(normX2, Ph, H, G, HnHn, X, Wy.T)
        _extrapolate(H, Hprev, momentum.beta, Hy)
        HHt = Hy @ Hy.T
        err_y = relative_error_from_products(normX2, Ph, Hy, G, HHt, X, Wy.T)
        if err_y > prev_y:
            np.copyto(Hy, H)
            HHt = HnHn
            err_y = err_n
            momentum.failure()
        else:
            momentum.success()
        prev_y = err_y
        if min(err_n, err_y) < best:
            np.copyto(bestW, Wy)
            np.copyto(bestH, H if err_n <= err_y else Hy)
            best = min(err_n, err_y)
        out.errors.append(best)
        out.n_iter = it
        if _should_stop(out, it, best, tol, target_error, callback, stage, _copies(bestW, bestH)):
            break
    out.W, out.H = np.ascontiguousarray(bestW.T), bestH


def _extrapolate(
    new: np.ndarray, old: np.ndarray, beta: float, out: np.ndarray, nonneg: bool = True
) -> np.ndarray:
    """out = new + beta (new - old), projected onto out >= 0 when ``nonneg``; returns out."""
    np.subtract(new, old, out=out)
    out *= new.dtype.type(beta)
    out += new
    if nonneg:
        np.maximum(out, 0, out=out)
    return out


class Momentum:
    """Ang & Gillis's extrapolation weight beta: after a step that lowered the
    error it grows (up to a cap that itself rises slowly); after one that did
    not, the cap drops to the failed beta and beta shrinks."""

    def __init__(self) -> None:
        self.beta, self.cap = BETA0, 1.0

    def success(self) -> None:
        self.beta = min(self.cap, GAMMA * self.beta)
        self.cap = min(1.0, GAMMA_BAR * self.cap)

    def failure(self) -> None:
        self.cap = self.beta
        self.beta = self.beta / ETA


def _least_squares(G: np.ndarray, P: np.ndarray) -> np.ndarray:
    """The minimum-norm solution of G V = P (G a Gram matrix), in float64; V in P's dtype.

    From the eigendecomposition of the symmetric G, ignoring eigenvalues of
    magnitude below r * eps(P's dtype) times the largest: G was built in that
    dtype, so those directions are rounding noise. A singular G (dead or
    repeated components, data of lower rank than the model) then gives the
    pseudo-inverse solution instead of one blown up by 1 / (tiny eigenvalue).
    The same solution as LAPACK's SVD-based least squares (gelsd) with that
    cutoff, at a fraction of its cost when P has many columns (r = 128,
    2048 columns: 4 ms instead of 74 ms).
    """
    r = G.shape[0]
    rcond = r * float(np.finfo(P.dtype).eps)
    lam, Q = np.linalg.eigh(G.astype(np.float64))
    size = np.abs(lam)
    keep = size > rcond * size.max(initial=0.0)
    Qk = Q[:, keep]
    V = Qk @ ((Qk.T @ P.astype(np.float64)) / lam[keep, None])
    return np.ascontiguousarray(V, dtype=P.dtype)


def _dlj_update(H: np.ndarray, WtX: np.ndarray, WtW: np.ndarray, tiny: float) -> None:
    """Ding, Li & Jordan's multiplicative Semi-NMF rule for H (W of any sign)."""
    pos_x, neg_x = np.maximum(WtX, 0), np.maximum(-WtX, 0)
    pos_g, neg_g = np.maximum(WtW, 0), np.maximum(-WtW, 0)
    num = pos_x + neg_g @ H
    den = neg_x + pos_g @ H
    # den <= tiny only where H is already (numerically) 0, or the component is
    # dead: those entries become 0 rather than 0 * (num / tiny) = 0 * inf = NaN.
    ratio = np.zeros_like(num)
    with np.errstate(over="ignore"):
        np.divide(num, den, out=ratio, where=den > tiny)
    np.minimum(ratio, np.finfo(ratio.dtype).max, out=ratio)
    H *= np.sqrt(ratio)
