"""Joint fine-tuning of a multilayer factorisation that stays good at every depth.

The model is X ~ W1 ... Wd Hd at every depth d = 1..L: the chain of features
W1 ... WL is shared, and each depth keeps its own coefficients Hd as variables
(Leplat, Hien, Onwunta & Gillis's multilayer model, scored on the data as
Trigeorgis et al. do). Fine-tuning minimises the weighted sum of every depth's
relative squared error,

    F = sum_d mu_d ||X - W1 ... Wd Hd||^2 / ||X||^2,   mu_d = w_d / e_d^2,

where e_d is depth d's greedy error (floored at :data:`ERROR_FLOOR`), w_1 = 1,
w_d = ``middle_weight`` between, and ``deep_weight`` for the deepest. ``deep_weight`` =
inf fine-tunes only the deepest product (the depths above it then only get their
coefficients refitted), the old behaviour, which let depth 1 degrade by 55% on
the camera; the default comes from the measured trade-off curve
(benchmarks/bench_engine.py, "frontier").

Block coordinate descent, every step exact or monotone, so F never rises:
W1 by HALS sweeps (least squares for Semi-NMF) against the weighted sums
S = sum_d mu_d B_d and M = sum_d mu_d B_d B_d^T of B_d = W2 ... Wd Hd (one
product with X); each inner Wl by Nesterov projected gradient (least squares
for Semi-NMF) on the same kind of weighted sums; every Hd by HALS sweeps
against Y_d = (W1 ... Wd)^T X, got from Y_1 = W1^T X (the second product
with X) by small products. A round thus costs two products with X (three
with the extrapolation of :func:`fine_tune`), about one single-layer iteration
at rank r1. A dead component (a zero column of
W1 ... Wd, or a zero row of Hd that no deeper depth uses) is restarted from the
worst-fitted column of X, in a way that leaves F unchanged, so no component is
carried dead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mlnmf_cli.engine._linalg import relative_error_from_products, squared_norm
from mlnmf_cli.engine._single import (
    DELTA,
    Momentum,
    RowSweeper,
    _extrapolate,
    _least_squares,
    n_sweeps,
)
from mlnmf_cli.engine.model import Model, chain
from mlnmf_cli.engine.options import DEFAULTS, Notify

APG_STEPS = 30
TOL_FACTOR = 0.1
REFIT_SWEEPS = 100
# Weight of the deepest depth's term relative to depth 1's (and of the depths
# between), and the error below which a depth's term is not weighted up further.
# Chosen from the measured frontier (benchmarks/results/engine.json, "frontier";
# camera, astronaut, coffee, chelsea; NMF and Semi-NMF; both dtypes; 150 rounds):
# deep_weight 2 is the largest tried that keeps every depth within 1.05x its
# greedy error on all 16 runs (worst 1.036x); 4 brings the deepest closer to a
# long rank-16 NMF (worst 1.06x instead of 1.08x) but lets depth 1 reach 1.064x.
DEEP_WEIGHT = DEFAULTS.deep_weight  # declared with the options
MIDDLE_WEIGHT = 0.25
ERROR_FLOOR = 1e-2
# Inner HALS sweeps per round: of each Hd, and at most of W1 (measured on the
# camera, 100 rounds: 4 and 6 sweeps end at a deepest error of 0.1200 instead of
# 0.1205 for 2 and 3, in 1.6-2x the time).
H_SWEEPS = 2
W1_SWEEPS = 3
# The greedy layers that fine-tuning will refine stop once an iteration gains
# less than this (relative, averaged): fine-tuning goes on improving every depth,
# and the last greedy iterations at 1e-5 cost as much as the whole fine-tuning.
GREEDY_TOL = 1e-3


@dataclass
class FineTuneOutput:
    Ws: list[np.ndarray]
    Hs: list[np.ndarray]
    errors: list[float] = field(default_factory=list)
    objective: list[float] = field(default_factory=list)
    depth_errors: list[float] = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False
    restarts: int = 0


def normalize_columns(Ws: list[np.ndarray], H: np.ndarray) -> None:
    """Scale every W's columns to unit norm, moving the scale into the next factor."""
    factors = [*Ws, H]
    for i, W in enumerate(Ws):
        s = np.sqrt(np.einsum("ij,ij->j", W, W, dtype=np.float64))
        s[s == 0] = 1.0
        W /= s.astype(W.dtype)
        factors[i + 1] *= s.astype(W.dtype)[:, None]


def normalize_depths(Ws: list[np.ndarray], Hs: list[np.ndarray]) -> None:
    """Scale every Wl's columns to unit norm, the scale moving into Hl's rows and
    W(l+1)'s rows: every depth's product W1 ... Wd Hd is unchanged."""
    for i, W in enumerate(Ws):
        s = np.sqrt(np.einsum("ij,ij->j", W, W, dtype=np.float64))
        s[s == 0] = 1.0
        s = s.astype(W.dtype)
        W /= s
        Hs[i] *= s[:, None]
        if i + 1 < len(Ws):
            Ws[i + 1] *= s[:, None]


def depth_weights(
    greedy_errors: list[float],
    deep_weight: float = DEEP_WEIGHT,
    middle_weight: float = MIDDLE_WEIGHT,
    floor: float = ERROR_FLOOR,
) -> np.ndarray:
    """mu_d = w_d / max(e_d, floor)^2, normalised to sum 1, with w = 1 at depth 1,
    ``middle_weight`` at the depths between, ``deep_weight`` at the deepest
    (inf: only the deepest, mu = (0, ..., 0, 1)).

    The depths between the first and the last share their features with both
    ends and stay well inside their greedy errors (about 0.9x measured), so they
    need less weight: 0.25 instead of 1 lowered both depth 1's and the deepest
    error on the camera and astronaut (the frontier in engine.json)."""
    L = len(greedy_errors)
    if math.isinf(deep_weight):
        mu = np.zeros(L)
        mu[-1] = 1.0
        return mu
    w = np.full(L, float(middle_weight))
    w[0] = 1.0
    w[-1] = deep_weight
    e = np.maximum(np.asarray(greedy_errors, dtype=np.float64), floor)
    mu = w / e**2
    return mu / mu.sum()


def apg(Wl: np.ndarray, AtA: np.ndarray, BBt: np.ndarray, C: np.ndarray, steps: int) -> np.ndarray:
    """Nesterov projected gradient on 0.5 <AtA Wl BBt, Wl> - <C, Wl>, with restart.

    Monotone: a step that would raise the objective is replaced by a plain
    projected gradient step (step 1 / Lipschitz, which cannot raise it). One
    product AtA Z BBt per step: the extrapolated point's is the same linear
    combination of its two iterates' products."""
    la = float(np.linalg.eigvalsh(AtA.astype(np.float64))[-1])
    lb = float(np.linalg.eigvalsh(BBt.astype(np.float64))[-1])
    lip = la * lb
    if not lip > 0:
        return Wl
    step = Wl.dtype.type(1.0 / lip)

    def f(Z: np.ndarray, AZ: np.ndarray) -> float:
        return 0.5 * float(np.vdot(AZ, Z)) - float(np.vdot(C, Z))

    W = Wl
    AW = AtA @ W @ BBt
    fw = f(W, AW)
    Y, AY = W, AW
    t = 1.0
    for _ in range(steps):
        Wn = np.maximum(Y - step * (AY - C), 0)
        AWn = AtA @ Wn @ BBt
        fn = f(Wn, AWn)
        if fn > fw:
            Wn = np.maximum(W - step * (AW - C), 0)
            AWn = AtA @ Wn @ BBt
            fn = f(Wn, AWn)
            t = 1.0
            Y, AY = Wn, AWn
            if fn > fw:
                break
        else:
            t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
            c = Wn.dtype.type((t - 1.0) / t_new)
            Y = Wn + c * (Wn - W)
            AY = AWn + c * (AWn - AW)
            t = t_new
        W, AW, fw = Wn, AWn, fn
    return W


class _Depths:
    """The products of one round: for each depth d, Y_d = A_d^T X, Q_d = A_d^T A_d
    and A_d = W1 ... Wd (m x r_d)."""

    def __init__(self) -> None:
        self.Y: list[np.ndarray] = []
        self.Q: list[np.ndarray] = []
        self.A: list[np.ndarray] = []

    def push(self, Y: np.ndarray, Q: np.ndarray, A: np.ndarray) -> None:
        self.Y.append(Y)
        self.Q.append(Q)
        self.A.append(A)


def _weighted_sums(
    Ws: list[np.ndarray], Hs: list[np.ndarray], mu: np.ndarray, k: int, HHts: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """N = sum_{d >= k} mu_d C_d and M = sum mu_d C_d C_d^T with C_d = W(k+1) ... Wd Hd
    (0-based k: C_k = Hs[k]); the two matrices the update of Ws[k] needs. With
    P = W(k+1) ... Wd (small), C_d = P Hd and C_d C_d^T = P (Hd Hd^T) P^T:
    ``HHts[d]`` = Hd Hd^T."""
    L = len(Ws)
    N = np.zeros_like(Hs[k])
    M = np.zeros((N.shape[0], N.shape[0]), N.dtype)
    for d in range(k, L):
        if mu[d] == 0.0:
            continue
        c = N.dtype.type(mu[d])
        if d == k:
            N += c * Hs[d]
            M += c * HHts[d]
            continue
        P = chain(Ws[k + 1 : d + 1])
        N += c * (P @ Hs[d])
        M += c * (P @ HHts[d] @ P.T)
    return N, M


def fine_tune(
    X: np.ndarray,
    Ws: list[np.ndarray],
    Hs: list[np.ndarray],
    *,
    method: str,
    max_iter: int,
    tol: float,
    target_error: float | None,
    callback: Notify | None,
    normalize: bool,
    greedy_errors: list[float] | None = None,
    deep_weight: float = DEEP_WEIGHT,
    middle_weight: float = MIDDLE_WEIGHT,
    apg_steps: int = APG_STEPS,
    h_sweeps: int = H_SWEEPS,
    max_sweeps: int = W1_SWEEPS,
    restart: bool = True,
    extrapolate: bool = True,
) -> FineTuneOutput:
    """Jointly refine all factors on the weighted sum of every depth's error.

    ``Hs[d]`` are the coefficients of depth d + 1. Returns the last iterate (the
    objective never rises), the history of the deepest error (``errors``, for
    progress) and of the objective, and the final error at every depth.

    With ``extrapolate``, after each round all factors are extrapolated together
    along the round's step, Z = new + beta (new - previous round's result)
    (projected onto the constraints), and Z replaces the round's result when its
    objective is lower; beta adapts as in Ang & Gillis (2019). It costs one more
    product with X per round.
    """
    semi = method == "semi"
    L = len(Ws)
    m, n = X.shape
    Ws = [np.array(W, copy=True) for W in Ws]
    Hs = [np.ascontiguousarray(H).copy() for H in Hs]
    normX2 = squared_norm(X)
    if greedy_errors is None:
        greedy_errors = [1.0] * L
    mu = depth_weights(list(greedy_errors), deep_weight, middle_weight)
    W1t = np.ascontiguousarray(Ws[0].T)
    Ws[0] = W1t.T
    prods = _products(X, W1t, Ws, normX2)
    errs = _errors(prods, Hs, normX2, X)
    out = FineTuneOutput(Ws, Hs, [errs[-1]], [_objective(mu, errs)], list(errs))
    if max_iter == 0 or normX2 == 0.0:
        out.converged = True
        return out
    ranks = [W.shape[1] for W in Ws]
    sweep_w1 = RowSweeper(W1t) if not semi else None
    sweep_h = [RowSweeper(H) for H in Hs]
    nsw_w1 = n_sweeps(m, n, ranks[0], max_sweeps=max_sweeps)
    colsq = np.einsum("ij,ij->j", X, X, dtype=np.float64)
    momentum = Momentum()
    last: tuple[list[np.ndarray], list[np.ndarray]] | None = None
    for it in range(1, max_iter + 1):
        # W1 against every depth's B_d = W2 ... Wd Hd.
        HHts = [H @ H.T for H in Hs]
        S, M = _weighted_sums(Ws, Hs, mu, 0, HHts)
        P = S @ X.T
        if semi:
            W1t[...] = _least_squares(M, P)
        else:
            assert sweep_w1 is not None
            sweep_w1.update(P, M, nsw_w1, DELTA)
        Y = W1t @ X
        Q = W1t @ W1t.T
        A = Ws[0]
        prods = _Depths()
        prods.push(Y, Q, A)
        for li in range(1, L):
            N, M = _weighted_sums(Ws, Hs, mu, li, HHts)
            K = Y @ N.T
            if semi:
                Z = _least_squares(Q, K)
                Ws[li] = np.ascontiguousarray(_least_squares(M, np.ascontiguousarray(Z.T)).T)
            else:
                Ws[li] = apg(Ws[li], Q, M, K, apg_steps)
            W = Ws[li]
            Y = W.T @ Y
            Q = W.T @ Q @ W
            A = A @ W
            prods.push(Y, Q, A)
        for d in range(L):
            sweep_h[d].update(prods.Y[d], prods.Q[d], h_sweeps, DELTA)
        if restart:
            out.restarts += _restart_dead(X, Ws, Hs, prods, colsq, semi, sweep_h, h_sweeps)
        errs = _errors(prods, Hs, normX2, X)
        if normalize:
            normalize_depths(Ws, Hs)
        obj = _objective(mu, errs)
        if extrapolate:
            new = ([W.copy() for W in Ws], [H.copy() for H in Hs])
            if last is not None:
                Zw = [
                    _extrapolate(W, Wp, momentum.beta, np.empty_like(W), nonneg=not semi)
                    for W, Wp in zip(new[0], last[0], strict=True)
                ]
                Zh = [
                    _extrapolate(H, Hp, momentum.beta, np.empty_like(H))
                    for H, Hp in zip(new[1], last[1], strict=True)
                ]
                Z1t = np.ascontiguousarray(Zw[0].T)
                errs_z = _errors(_products(X, Z1t, Zw, normX2), Zh, normX2, X)
                obj_z = _objective(mu, errs_z)
                if obj_z < obj:
                    W1t[...] = Z1t
                    Ws[1:] = Zw[1:]
                    for H, Hz in zip(Hs, Zh, strict=True):
                        H[...] = Hz
                    errs, obj = errs_z, obj_z
                    momentum.success()
                else:
                    momentum.failure()
            last = new
        prev = out.objective[-1]
        out.errors.append(errs[-1])
        out.objective.append(obj)
        out.depth_errors = list(errs)
        out.n_iter = it
        stop = (
            callback(
                "fine-tune",
                it,
                errs[-1],
                lambda: Model([W.copy() for W in Ws], [H.copy() for H in Hs]),
            )
            if callback is not None
            else False
        )
        if target_error is not None and errs[-1] <= target_error:
            out.converged = True
            break
        if obj == 0.0 or (prev - obj) <= TOL_FACTOR * tol * prev:
            out.converged = True
            break
        if stop:
            break
    out.Ws = [np.ascontiguousarray(W) for W in Ws]
    out.Hs = Hs
    return out


def _products(X: np.ndarray, W1t: np.ndarray, Ws: list[np.ndarray], normX2: float) -> _Depths:
    prods = _Depths()
    Y, Q, A = W1t @ X, W1t @ W1t.T, Ws[0]
    prods.push(Y, Q, A)
    for W in Ws[1:]:
        Y, Q, A = W.T @ Y, W.T @ Q @ W, A @ W
        prods.push(Y, Q, A)
    return prods


def _errors(prods: _Depths, Hs: list[np.ndarray], normX2: float, X: np.ndarray) -> list[float]:
    return [
        relative_error_from_products(normX2, Y, H, Q, H @ H.T, X, A)
        for Y, Q, A, H in zip(prods.Y, prods.Q, prods.A, Hs, strict=True)
    ]


def _objective(mu: np.ndarray, errs: list[float]) -> float:
    return float(np.dot(mu, np.square(errs)))


def dead_components(Ws: list[np.ndarray], Hs: list[np.ndarray]) -> list[int]:
    """Per depth, the number of components with an all-zero column of W1 ... Wd
    or an all-zero row of Hd."""
    counts = []
    A = None
    for W, H in zip(Ws, Hs, strict=True):
        A = W if A is None else A @ W
        dead = ~np.any(A, axis=0) | ~np.any(H, axis=1)
        counts.append(int(dead.sum()))
    return counts


def _restart_dead(
    X: np.ndarray,
    Ws: list[np.ndarray],
    Hs: list[np.ndarray],
    prods: _Depths,
    colsq: np.ndarray,
    semi: bool,
    sweep_h: list[RowSweeper],
    h_sweeps: int,
) -> int:
    """Restart the dead components of every depth without changing any depth's fit.

    Component j of depth d is dead when column j of A_d = W1 ... Wd is zero, or
    row j of Hd is zero while no deeper depth uses it (row j of W(d+1) zero).
    Then row j of W(d+1) is zeroed (it multiplied a zero column, or was zero),
    Hd's row j set to 0, and column j of Wd pointed at the residual of the
    worst-fitted column of X at depth d: every product W1 ... Wk Hk is unchanged.
    Hd is then swept again, so the new component is used at once when it helps.
    Returns the number restarted.
    """
    L = len(Ws)
    total = 0
    for d in range(L):
        A, H = prods.A[d], Hs[d]
        zero_col = ~np.any(A, axis=0)
        unused = ~np.any(H, axis=1)
        if d + 1 < L:
            unused &= ~np.any(Ws[d + 1], axis=1)
        dead = np.flatnonzero(zero_col | unused)
        if dead.size == 0:
            continue
        Y, Q = prods.Y[d], prods.Q[d]
        Hd = H.astype(np.float64)
        resid = colsq - 2.0 * np.einsum("ij,ij->j", Y.astype(np.float64), Hd)
        resid += np.einsum("ij,ij->j", Hd, Q.astype(np.float64) @ Hd)
        order = np.argsort(-resid, kind="stable")
        done = 0
        for j, c in zip(dead, order[: dead.size], strict=False):
            if not resid[c] > 1e-12 * colsq.max(initial=0.0):
                break
            r = X[:, c].astype(np.float64) - A.astype(np.float64) @ Hd[:, c]
            if d == 0:
                w = r if semi else np.maximum(r, 0.0)
                a = w
            else:
                Aprev = prods.A[d - 1].astype(np.float64)
                w = Aprev.T @ r
                if not semi:
                    np.maximum(w, 0.0, out=w)
                a = Aprev @ w
            na = float(np.linalg.norm(a))
            if not na > 0.0:
                continue
            Ws[d][:, j] = (w / na).astype(Ws[d].dtype)
            H[j] = 0
            if d + 1 < L:
                Ws[d + 1][j, :] = 0
            done += 1
        if done:
            # The products of depth d with the new columns, then Hd swept again.
            A = prods.A[d - 1] @ Ws[d] if d else Ws[0]
            prods.A[d] = A
            prods.Y[d] = A.T @ X
            prods.Q[d] = A.T @ A
            sweep_h[d].update(prods.Y[d], prods.Q[d], h_sweeps, DELTA)
            total += done
    return total


def refit_coefficients(X: np.ndarray, A: np.ndarray, H0: np.ndarray) -> np.ndarray:
    """argmin_{H >= 0} ||X - A H|| by HALS sweeps warm-started at max(H0, 0)."""
    H = np.ascontiguousarray(np.maximum(H0, 0), dtype=X.dtype)
    if not np.any(A):
        return np.zeros_like(H)
    AtX = A.T @ X
    AtA = A.T @ A
    RowSweeper(H).update(AtX, AtA, REFIT_SWEEPS, 1e-3)
    return H
