"""Tests of the numerical engine (mlnmf_cli.engine)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import fit_loss
from peak import traced_peak
from PIL import Image

from mlnmf_cli.engine import (
    DEFAULTS,
    INITS,
    METHODS,
    SOLVERS,
    DeepResult,
    Model,
    NMFResult,
    _linalg,
    _single,
    factorize,
    factorize_deep,
)
from mlnmf_cli.errors import MlnmfError, ParameterError

ROOT = Path(__file__).parent.parent
CAMERA = ROOT / "sample_images" / "camera.png"


def camera() -> np.ndarray:
    return np.asarray(Image.open(CAMERA), dtype=float) / 255


def rel_err(X: np.ndarray, W: np.ndarray, H: np.ndarray) -> float:
    X = np.asarray(X, dtype=float)
    return float(np.linalg.norm(X - W.astype(float) @ H.astype(float)) / np.linalg.norm(X))


@pytest.fixture(scope="module")
def rand_matrix() -> np.ndarray:
    return np.random.default_rng(1).random((40, 30))


@pytest.fixture(scope="module")
def planted() -> np.ndarray:
    rng = np.random.default_rng(2)
    return rng.random((60, 5)) @ rng.random((5, 50))


# --------------------------------------------------------------------------- API


def test_public_constants() -> None:
    assert METHODS == ("nmf", "semi")
    assert SOLVERS == ("hals", "mu")
    assert INITS == ("nndsvda", "nndsvd", "random", "svd")
    assert DEFAULTS.method in METHODS
    assert DEFAULTS.solver == "hals"
    assert DEFAULTS.init == "nndsvda"
    assert DEFAULTS.fine_tune is True
    assert DEFAULTS.normalize is True


def test_result_fields(rand_matrix: np.ndarray) -> None:
    res = factorize(rand_matrix, 4, max_iter=7, tol=0)
    assert isinstance(res, NMFResult)
    assert res.W.shape == (40, 4) and res.H.shape == (4, 30)
    assert res.history.dtype == np.float64 and res.history.shape == (8,)
    assert res.n_iter == 7 and res.converged is False
    assert res.history[-1] == pytest.approx(rel_err(rand_matrix, res.W, res.H), rel=1e-9)
    assert np.all(res.W >= 0) and np.all(res.H >= 0)
    with pytest.raises(AttributeError):
        res.n_iter = 3  # type: ignore[misc]


def test_error_history_matches_explicit_residual(rand_matrix: np.ndarray) -> None:
    res = factorize(rand_matrix, 5, max_iter=0)
    assert res.history.shape == (1,)
    assert res.history[0] == pytest.approx(rel_err(rand_matrix, res.W, res.H), rel=1e-9)


# ---------------------------------------------------------------- monotonicity


@pytest.mark.parametrize(
    ("method", "solver", "init"),
    [
        ("nmf", "hals", "nndsvda"),
        ("nmf", "hals", "random"),
        ("nmf", "hals", "nndsvd"),
        ("nmf", "mu", "nndsvda"),
        ("nmf", "mu", "random"),
        ("semi", "hals", "svd"),
        ("semi", "hals", "nndsvda"),
    ],
)
def test_loss_never_increases(rand_matrix: np.ndarray, method: str, solver: str, init: str) -> None:
    res = factorize(rand_matrix, 6, method=method, solver=solver, init=init, max_iter=60, tol=0)
    e = res.history
    assert res.n_iter == 60
    assert np.all(np.diff(e) <= 1e-10 * e[:-1]), np.diff(e).max()
    assert e[-1] < e[1]


def test_plain_hals_without_extrapolation_is_monotone(rand_matrix: np.ndarray) -> None:
    res = factorize(rand_matrix, 6, max_iter=60, tol=0, extrapolate=False)
    assert np.all(np.diff(res.history) <= 1e-10 * res.history[:-1])
    assert res.history[-1] == pytest.approx(rel_err(rand_matrix, res.W, res.H), rel=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sweeps_fit_a_small_component_exactly(dtype: type) -> None:
    # Component 0's norm is 1e-4 of the others' (its Gram diagonal 1e-8, below
    # float32's eps but far above rounding level): it must get the exact
    # coordinate update, so sweeps from 0 recover the exact fit.
    rng = np.random.default_rng(4)
    U = rng.random((4, 40))
    U[0] *= 1e-4
    V_true = rng.random((4, 30))
    V_true[0] /= 1e-4
    Xo = (V_true.T @ U).astype(dtype)
    U = U.astype(dtype)
    V = np.zeros((4, 30), dtype)
    _single.RowSweeper(V).update(U @ Xo.T, U @ U.T, 200, 0.0)
    assert np.sqrt(fit_loss(Xo, U, V)) <= 1e-3 * np.linalg.norm(Xo.astype(float))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [0.0, 1e-6, 1e-12, 1e-30])
def test_sweep_never_raises_the_loss_of_a_component_with_a_tiny_gram_diagonal(
    dtype: type, scale: float
) -> None:
    # Component 0 of U has a squared norm below eps times the others' (0 for
    # a dead one) but a large coefficient row, so it carries real weight:
    # V is the exact fit. The sweep must not move away from it.
    rng = np.random.default_rng(3)
    U = rng.random((5, 40))
    U[0] *= scale
    V = rng.random((5, 30))
    if scale:
        V[0] /= scale
    Xo = (V.T @ U).astype(dtype)
    U, V = U.astype(dtype), V.astype(dtype)

    before = fit_loss(Xo, U, V)
    _single.RowSweeper(V, block=2).update(U @ Xo.T, U @ U.T, 3, 0.0)
    assert np.all(np.isfinite(V))
    assert fit_loss(Xo, U, V) <= before + 1e-6 * float(np.vdot(Xo, Xo))


def test_extrapolation_returns_the_best_iterate(rand_matrix: np.ndarray) -> None:
    for n in (3, 17, 60):
        res = factorize(rand_matrix, 6, max_iter=n, tol=0)
        assert res.history[-1] == pytest.approx(rel_err(rand_matrix, res.W, res.H), rel=1e-9)
        assert res.history[-1] == res.history.min()


def test_planted_low_rank_is_recovered(planted: np.ndarray) -> None:
    res = factorize(planted, 5, max_iter=3000, tol=0, target_error=1e-5)
    assert res.history[-1] < 1e-4
    assert rel_err(planted, res.W, res.H) < 1e-4
    assert res.converged


def test_semi_nmf_fits_signed_matrix() -> None:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((50, 4)) @ rng.random((4, 40))
    assert X.min() < 0
    res = factorize(X, 4, method="semi", init="svd", max_iter=500, tol=1e-12)
    assert np.all(res.H >= 0)
    assert res.W.min() < 0
    assert rel_err(X, res.W, res.H) < 1e-3
    with pytest.raises(ParameterError) as info:
        factorize(X, 4)
    assert str(info.value) == (
        f"X must be non-negative for method 'nmf', got minimum {X.min():g} "
        "(use method 'semi' for signed data)"
    )


def test_semi_nmf_on_signed_noise_improves_on_start() -> None:
    X = np.random.default_rng(4).standard_normal((30, 20))
    res = factorize(X, 5, method="semi", max_iter=50)
    assert np.isfinite(res.history).all() and res.history[-1] < res.history[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["regular", "singular", "zero"])
def test_semi_least_squares_is_the_minimum_norm_solution(dtype: type, kind: str) -> None:
    # The W step of Semi-NMF: LAPACK's SVD-based least squares with the cutoff
    # r * eps(dtype) is the reference; a repeated and a dead component make G
    # singular, and then only the minimum-norm solution is bounded.
    rng = np.random.default_rng(1)
    A = rng.standard_normal((20, 50))
    if kind == "singular":
        A[5], A[7] = A[3], 0
    if kind == "zero":
        A[...] = 0
    G, P = (A @ A.T).astype(dtype), rng.standard_normal((20, 30)).astype(dtype)
    V = _single._least_squares(G, P)
    ref = np.linalg.lstsq(G.astype(float), P.astype(float), rcond=20 * np.finfo(dtype).eps)[0]
    assert V.dtype == dtype
    assert np.allclose(V, ref, rtol=0, atol=10 * np.finfo(dtype).eps * max(np.abs(ref).max(), 1))


# ------------------------------------------------------------- deep / fine-tune


def test_deep_result_structure(rand_matrix: np.ndarray) -> None:
    d = factorize_deep(rand_matrix, [8, 5, 3], max_iter=30, fine_tune_iter=10)
    assert isinstance(d, DeepResult)
    assert d.ranks == (8, 5, 3)
    assert [W.shape for W in d.Ws] == [(40, 8), (8, 5), (5, 3)]
    assert [H.shape for H in d.Hs] == [(8, 30), (5, 30), (3, 30)]
    assert d.H is d.Hs[-1]
    assert len(d.depth_errors) == len(d.greedy_errors) == len(d.layer_errors) == 3
    assert len(d.layers) == 3 and all(isinstance(r, NMFResult) for r in d.layers)
    assert d.fine_tune_history.dtype == np.float64
    assert d.fine_tune_history.shape == (d.fine_tune_n_iter + 1,)
    assert set(d.seconds) == {"greedy", "fine_tune"}
    for depth in (1, 2, 3):
        R = d.reconstruct(depth)
        assert R.shape == rand_matrix.shape
        E = d.effective_features(depth)
        assert np.allclose(R, E @ d.Hs[depth - 1])
        assert d.depth_errors[depth - 1] == pytest.approx(
            np.linalg.norm(rand_matrix - R) / np.linalg.norm(rand_matrix), rel=1e-9
        )
    assert np.array_equal(d.reconstruct(), d.reconstruct(3))
    for W in d.Ws:
        assert np.all(W >= 0)
    for H in d.Hs:
        assert np.all(H >= 0)


@pytest.mark.parametrize("bad", [0, 4, -1])
def test_reconstruct_rejects_bad_depth(rand_matrix: np.ndarray, bad: int) -> None:
    d = factorize_deep(rand_matrix, [5, 3, 2], max_iter=5, fine_tune_iter=2)
    with pytest.raises(ParameterError, match=rf"^depth must be between 1 and 3, got {bad}$"):
        d.reconstruct(bad)


def test_fine_tune_never_worse_than_greedy(rand_matrix: np.ndarray) -> None:
    for method, init in (("nmf", "nndsvda"), ("nmf", "random"), ("semi", "svd")):
        d = factorize_deep(rand_matrix, [10, 6, 3], method=method, init=init, max_iter=40)
        assert d.depth_errors[-1] <= d.greedy_errors[-1] * (1 + 1e-12)
        assert d.fine_tune_history[0] == pytest.approx(d.greedy_errors[-1], rel=1e-9)
        # The history is the deepest error per round (the objective weighs every
        # depth, so it may rise; tests/test_finetune.py checks the objective).
        assert d.fine_tune_history[-1] == pytest.approx(d.depth_errors[-1], rel=1e-6)
        if method == "nmf":
            assert all(e <= d.depth_errors[-1] * (1 + 1e-9) for e in d.depth_errors)


def test_greedy_without_normalisation_and_without_fine_tune(rand_matrix: np.ndarray) -> None:
    d = factorize_deep(
        rand_matrix, [8, 4], fine_tune=False, normalize=False, refit=False, max_iter=20
    )
    assert d.fine_tune_n_iter == 0
    assert d.depth_errors == d.greedy_errors
    assert np.array_equal(d.Ws[0], d.layers[0].W) and np.array_equal(d.Hs[0], d.layers[0].H)
    assert np.array_equal(d.Ws[1], d.layers[1].W) and np.array_equal(d.Hs[1], d.layers[1].H)
    assert d.layers[1].history[-1] == pytest.approx(d.layer_errors[1], rel=1e-9)


def test_refit_fits_deeper_coefficients_to_the_data(rand_matrix: np.ndarray) -> None:
    plain = factorize_deep(rand_matrix, [10, 6, 3], fine_tune=False, refit=False, max_iter=40)
    refit = factorize_deep(rand_matrix, [10, 6, 3], fine_tune=False, max_iter=40)
    # Layers 1 and 2 factor the same matrices either way; only H2 is re-fitted.
    assert np.array_equal(refit.Ws[0], plain.Ws[0]) and np.array_equal(refit.Hs[0], plain.Hs[0])
    assert np.array_equal(refit.Ws[1], plain.Ws[1])
    assert refit.greedy_errors[1] < plain.greedy_errors[1]
    assert refit.greedy_errors[2] < plain.greedy_errors[2]
    for d, bound in ((refit, 1e-4), (plain, None)):
        for depth in (2, 3):
            A, H = d.effective_features(depth), d.Hs[depth - 1]
            grad = A.T @ (A @ H - rand_matrix)
            kkt = np.linalg.norm(np.where(H > 0, grad, np.minimum(grad, 0)))
            kkt /= np.linalg.norm(A.T @ rand_matrix)
            # Re-fitted: the non-negative least-squares optimum for W1...Wd.
            # Plain greedy: fitted to the previous layer only, far from it.
            assert kkt < bound if bound else kkt > 1e-2


def test_normalisation_gives_unit_columns_and_keeps_products(rand_matrix: np.ndarray) -> None:
    d = factorize_deep(rand_matrix, [8, 4], fine_tune=False, max_iter=20)
    for W in d.Ws:
        assert np.allclose(np.linalg.norm(W, axis=0), 1.0)
    raw = d.layers[0]
    assert np.allclose(d.Ws[0] @ d.Hs[0], raw.W @ raw.H)


@pytest.mark.slow
def test_camera_deep_fine_tuned_close_to_single_layer() -> None:
    """The engine targets: greedy depth 3 <= 0.21; every depth within 5% of a full
    greedy run's (issue 15's frontier) for every seed; the deepest within 4.5% of a
    rank-16 NMF as the median over seeds. The layer-1 basin is a draw of the seed
    (measured over seeds 0-4: 1.041-1.055 with the 1-power-iteration NNDSVD start,
    1.035-1.059 with 4), so one seed's ratio is not a measurement."""
    X = camera()
    deepest = []
    for seed in range(3):
        single = factorize(X, 16, seed=seed)
        full_greedy = factorize_deep(X, [64, 32, 16], fine_tune=False, seed=seed)
        d = factorize_deep(X, [64, 32, 16], seed=seed)
        assert d.greedy_errors[-1] <= 0.21
        assert all(
            e <= 1.05 * g for e, g in zip(d.depth_errors, full_greedy.greedy_errors, strict=True)
        )
        assert d.depth_errors[-1] < d.greedy_errors[-1]
        deepest.append(d.depth_errors[-1] / single.history[-1])
    assert float(np.median(deepest)) <= 1.045, np.round(deepest, 4)


# ------------------------------------------------------------ seed reproduction


def test_seed_pipeline_svd_start_is_rank_r_minus_1_svd() -> None:
    X = np.random.default_rng(5).random((30, 25))
    r = 6
    res = factorize(X, r, method="semi", init="svd", max_iter=0)
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    best = (U[:, : r - 1] * s[: r - 1]) @ Vt[: r - 1]
    assert np.allclose(res.W @ res.H, best, atol=1e-10)
    assert np.all(res.H >= 0)
    assert np.allclose(res.W[:, -1], -res.W[:, :-1].sum(axis=1))
    res2 = factorize(X, 2, method="semi", init="svd", max_iter=0)
    assert np.allclose(res2.W[:, 0], -res2.W[:, 1])
    assert np.allclose(res2.W @ res2.H, s[0] * np.outer(U[:, 0], Vt[0]), atol=1e-10)


def test_seed_pipeline_deep_reproduces_stacked_appr_seminmf() -> None:
    X = np.random.default_rng(6).random((30, 25))
    d = factorize_deep(
        X, [6, 5, 4], method="semi", init="svd", normalize=False, fine_tune=False, max_iter=0
    )
    current = X
    for layer, r in enumerate([6, 5, 4]):
        U, s, Vt = np.linalg.svd(current, full_matrices=False)
        best = (U[:, : r - 1] * s[: r - 1]) @ Vt[: r - 1]
        assert np.allclose(d.Ws[layer] @ d.Hs[layer], best, atol=1e-9)
        current = d.Hs[layer]
    assert d.fine_tune_n_iter == 0
    iterated = factorize_deep(
        X, [6, 5, 4], method="semi", init="svd", normalize=False, fine_tune=False, max_iter=20
    )
    assert iterated.layer_errors[0] < d.layer_errors[0]


def test_nmf_with_svd_start_is_non_negative(rand_matrix: np.ndarray) -> None:
    res = factorize(rand_matrix, 4, init="svd", max_iter=0)
    assert np.all(res.W >= 0) and np.all(res.H >= 0)


# ------------------------------------------------------------------ degenerate


DEGENERATE = {
    "zero": (np.zeros((6, 7)), 3),
    "constant": (np.full((6, 7), 2.5), 3),
    "row": (np.random.default_rng(7).random((1, 9)), 1),
    "column": (np.random.default_rng(8).random((9, 1)), 1),
    "rank1": (np.random.default_rng(9).random((8, 6)), 1),
    "full_rank": (np.random.default_rng(10).random((8, 6)), 6),
}


# The svd init needs rank >= 2; rank 1 with it is tested as invalid input.
DEGENERATE_CASES = [
    (name, init)
    for name in sorted(DEGENERATE)
    for init in INITS
    if init != "svd" or DEGENERATE[name][1] >= 2
]


@pytest.mark.parametrize(("name", "init"), DEGENERATE_CASES)
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("method", METHODS)
def test_degenerate_inputs_stay_finite(name: str, solver: str, init: str, method: str) -> None:
    X, r = DEGENERATE[name]
    res = factorize(X, r, method=method, solver=solver, init=init, max_iter=30)
    assert np.isfinite(res.W).all() and np.isfinite(res.H).all()
    assert np.isfinite(res.history).all()
    assert np.all(res.H >= 0)
    if name == "zero":
        assert np.all(res.history == 0.0)
        assert not np.any(res.W @ res.H)
    else:
        assert res.history[-1] == pytest.approx(rel_err(X, res.W, res.H), rel=1e-6, abs=1e-7)


def test_constant_matrix_is_fitted_exactly() -> None:
    X = np.full((6, 7), 2.5)
    res = factorize(X, 1)
    assert res.history[-1] < 1e-12


def test_degenerate_deep() -> None:
    for X in (np.zeros((6, 7)), np.full((6, 7), 1.0), np.random.default_rng(11).random((1, 5))):
        ranks = [1] if X.shape[0] == 1 else [3, 2, 1]
        d = factorize_deep(X, ranks, max_iter=20, fine_tune_iter=10)
        for A in (*d.Ws, *d.Hs):
            assert np.isfinite(A).all()
        assert np.isfinite(d.depth_errors).all() and np.isfinite(d.fine_tune_history).all()
        if not X.any():
            assert d.depth_errors == [0.0] * len(ranks)


def test_fine_tuning_of_a_semi_nmf_above_the_data_rank_never_ends_worse() -> None:
    # Rank-2 data, a rank-7 Semi-NMF: the least-squares steps give factors far
    # larger than the data, and the errors from products cancel (the fine-tune
    # once measured its start at 1.5e-4 when it was 6.0e-8, and ended at 1.1e-7).
    rng = np.random.default_rng(131)
    X = rng.random((7, 2)) @ rng.random((2, 10))
    d = factorize_deep(X, [7], method="semi", init="nndsvd", max_iter=7, fine_tune_iter=1, seed=131)
    assert d.depth_errors[-1] <= d.greedy_errors[-1]


def test_float32_data_far_from_one_is_fine_tuned_without_overflow() -> None:
    # Data of 2**33 in float32: the fine-tune's Gram matrices overflowed before
    # the data was brought to unit scale from 2**16 on (it was 2**40).
    rng = np.random.default_rng(0)
    X = np.ldexp(rng.random((4, 5)), 33).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        d = factorize_deep(X, [4, 4, 4], solver="mu", init="svd", max_iter=0, fine_tune_iter=1)
    assert np.isfinite(d.fine_tune_history).all() and np.isfinite(d.depth_errors).all()
    assert d.depth_errors[-1] <= d.greedy_errors[-1] + 1e-5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("method", "init"),
    [("nmf", "nndsvd"), ("nmf", "nndsvda"), ("semi", "nndsvda"), ("semi", "nndsvd")],
)
@pytest.mark.parametrize(
    ("shape", "ranks", "max_iter"), [((29, 17), [17, 16, 13], 10), ((26, 22), [22, 15], 29)]
)
def test_deep_model_of_rank_one_data_with_full_rank_layers(
    shape: tuple[int, int], ranks: list[int], max_iter: int, method: str, init: str, dtype: type
) -> None:
    """Many more components than the data's rank: most are (numerically) dead or
    redundant, the Gram matrices are singular. Fine-tuning must neither overflow
    (1 / a subnormal Gram diagonal) nor blow the factors up into a model worse
    than its greedy start (least squares on a singular Gram matrix)."""
    X = np.full(shape, 0.7, dtype=dtype)
    d = factorize_deep(
        X, ranks, method=method, init=init, max_iter=max_iter, fine_tune_iter=5, seed=1
    )
    for A in (*d.Ws, *d.Hs):
        assert np.isfinite(A).all()
        assert np.abs(A).max() < 1e3
    assert d.depth_errors[-1] <= d.greedy_errors[-1] + 1e-6


@pytest.mark.parametrize(
    ("dtype", "exponent"),
    [(np.float32, 70), (np.float32, -110), (np.float64, 600), (np.float64, -900)],
)
@pytest.mark.parametrize(("method", "solver"), [("nmf", "hals"), ("nmf", "mu"), ("semi", "hals")])
def test_data_of_extreme_magnitude_is_factored_at_unit_scale(
    rand_matrix: np.ndarray, dtype: type, exponent: int, method: str, solver: str
) -> None:
    """float32 products overflow from about 1e19: data far from 1 is factored at
    unit scale (exactly, by a power of two) and W scaled back."""
    base = (rand_matrix * (1.5 / rand_matrix.max())).astype(dtype)  # largest entry in [1, 2)
    X = np.ldexp(base, exponent)
    res = factorize(X, 5, method=method, solver=solver, max_iter=20)
    unit = factorize(base, 5, method=method, solver=solver, max_iter=20)
    assert res.W.dtype == dtype and np.isfinite(res.W).all() and np.isfinite(res.H).all()
    # 2**exponent is shared evenly between the features and the coefficients.
    a, b = exponent - exponent // 2, exponent // 2
    assert np.array_equal(res.W, np.ldexp(unit.W, a))
    assert np.array_equal(res.H, np.ldexp(unit.H, b))
    assert np.array_equal(res.history, unit.history)
    deep = factorize_deep(X, [6, 3], method=method, solver=solver, max_iter=10, fine_tune_iter=5)
    deep_unit = factorize_deep(
        base, [6, 3], method=method, solver=solver, max_iter=10, fine_tune_iter=5
    )
    assert deep.depth_errors == deep_unit.depth_errors
    assert np.array_equal(deep.Ws[0], np.ldexp(deep_unit.Ws[0], a))
    assert np.array_equal(deep.Ws[1], deep_unit.Ws[1])
    for H, H_unit in zip(deep.Hs, deep_unit.Hs, strict=True):
        assert np.array_equal(H, np.ldexp(H_unit, b))
    assert np.array_equal(deep.layers[0].W, np.ldexp(deep_unit.layers[0].W, a))
    assert np.array_equal(deep.layers[1].W, deep_unit.layers[1].W)
    assert np.array_equal(deep.layers[1].H, np.ldexp(deep_unit.layers[1].H, b))
    assert np.allclose(
        deep.reconstruct(), np.ldexp(deep_unit.reconstruct(), exponent), rtol=1e-5, atol=0
    )


def test_dead_components_are_revived_without_nan() -> None:
    X = np.zeros((40, 40))
    X[:10, :10] = 1.0
    X[20:, 25:] = np.random.default_rng(12).random((20, 15))
    res = factorize(X, 12, init="nndsvd", max_iter=100)
    assert np.isfinite(res.W).all() and np.isfinite(res.H).all()
    assert res.history[-1] < 0.5 * res.history[0]


# --------------------------------------------------------------------- invalid


X33 = np.ones((3, 4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            dict(X=-X33, rank=1),
            "X must be non-negative for method 'nmf', got minimum -1 "
            "(use method 'semi' for signed data)",
        ),
        (
            dict(X=np.array([[np.nan, 1.0], [1.0, 1.0]]), rank=1),
            "X must contain only finite values, got 1 NaN or inf entries",
        ),
        (
            dict(X=np.array([[np.inf, 1.0], [-np.inf, 1.0]]), rank=1, method="semi"),
            "X must contain only finite values, got 2 NaN or inf entries",
        ),
        (
            dict(X=np.ones((2, 3, 4)), rank=1),
            "X must be a 2-D array, got 3 dimension(s) (shape (2, 3, 4))",
        ),
        (dict(X=np.ones(5), rank=1), "X must be a 2-D array, got 1 dimension(s) (shape (5,))"),
        (dict(X=np.ones((0, 4)), rank=1), "X must not be empty, got shape (0, 4)"),
        (dict(X=np.array([["a"]]), rank=1), "X must be a real numeric array, got dtype <U1"),
        (dict(X=X33, rank=0), "rank must be between 1 and min(m, n) = 3, got 0"),
        (dict(X=X33, rank=4), "rank must be between 1 and min(m, n) = 3, got 4"),
        (dict(X=X33, rank=2.0), "rank must be an integer, got 2.0"),
        (dict(X=X33, rank=True), "rank must be an integer, got True"),
        (dict(X=X33, rank=1, method="kl"), "method must be one of 'nmf', 'semi', got 'kl'"),
        (dict(X=X33, rank=1, solver="cd"), "solver must be one of 'hals', 'mu', got 'cd'"),
        (
            dict(X=X33, rank=1, init="nndsvdar"),
            "init must be one of 'nndsvda', 'nndsvd', 'random', 'svd', got 'nndsvdar'",
        ),
        (
            dict(X=X33, rank=1, init="svd"),
            "rank must be >= 2 for init 'svd' (the Gillis-Kumar start builds r non-negative "
            "coefficients from a rank-(r-1) SVD), got 1",
        ),
        (dict(X=X33, rank=1, max_iter=-1), "max_iter must be an integer >= 0, got -1"),
        (dict(X=X33, rank=1, max_iter=2.5), "max_iter must be an integer >= 0, got 2.5"),
        (dict(X=X33, rank=1, tol=-0.1), "tol must be a finite number >= 0, got -0.1"),
        (dict(X=X33, rank=1, tol=float("nan")), "tol must be a finite number >= 0, got nan"),
        (
            dict(X=X33, rank=1, target_error=-1.0),
            "target_error must be a finite number >= 0 or None, got -1.0",
        ),
        (
            dict(X=X33, rank=1, target_error="0.1"),
            "target_error must be a finite number >= 0 or None, got '0.1'",
        ),
        (dict(X=X33, rank=1, seed=-3), "seed must be an integer >= 0, got -3"),
        (dict(X=X33, rank=1, callback=5), "callback must be callable or None, got 5"),
    ],
)
def test_invalid_single_layer(kwargs: dict, message: str) -> None:
    with pytest.raises(ParameterError) as info:
        factorize(**kwargs)
    assert str(info.value) == message
    assert isinstance(info.value, MlnmfError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(ranks=[]), "ranks must not be empty, got []"),
        (dict(ranks=5), "ranks must be a sequence of integers, got 5"),
        (
            dict(ranks=[2, 3]),
            "ranks must be non-increasing, got ranks[1] = 3 > ranks[0] = 2 in [2, 3]",
        ),
        (dict(ranks=[3, 2], layers=3), "layers must equal len(ranks) = 2, got 3"),
        (dict(ranks=[3, 2], layers=0), "layers must be an integer >= 1, got 0"),
        (dict(ranks=[5]), "ranks[0] must be between 1 and min(m, n) = 4, got 5"),
        (dict(ranks=[3, 0]), "ranks[1] must be between 1 and min(ranks[0], n) = 3, got 0"),
        (dict(ranks=[3, 2.5]), "ranks[1] must be an integer, got 2.5"),
        (
            dict(ranks=[3, 1], init="svd"),
            "ranks[1] must be >= 2 for init 'svd' (the Gillis-Kumar start builds r non-negative "
            "coefficients from a rank-(r-1) SVD), got 1",
        ),
        (dict(ranks=[2], fine_tune="yes"), "fine_tune must be True or False, got 'yes'"),
        (dict(ranks=[2], normalize=1), "normalize must be True or False, got 1"),
        (dict(ranks=[2], fine_tune_iter=-2), "fine_tune_iter must be an integer >= 0, got -2"),
    ],
)
def test_invalid_deep(kwargs: dict, message: str) -> None:
    with pytest.raises(ParameterError) as info:
        factorize_deep(np.ones((4, 6)), **kwargs)
    assert str(info.value) == message


def test_deep_rank_limited_by_columns() -> None:
    with pytest.raises(ParameterError) as info:
        factorize_deep(np.ones((10, 3)), [4, 2])
    assert str(info.value) == "ranks[0] must be between 1 and min(m, n) = 3, got 4"
    d = factorize_deep(np.ones((10, 3)), [3, 3, 2], max_iter=5, fine_tune_iter=2)
    assert d.ranks == (3, 3, 2)
    assert [W.shape for W in d.Ws] == [(10, 3), (3, 3), (3, 2)]


def test_validation_happens_before_any_work() -> None:
    calls: list[str] = []
    with pytest.raises(ParameterError):
        factorize_deep(np.ones((4, 6)), [3, 2, 5], callback=lambda *a: calls.append(a[0]))
    assert calls == []


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("init", INITS)
def test_bit_identical_reruns(rand_matrix: np.ndarray, init: str) -> None:
    a = factorize(rand_matrix, 5, init=init, max_iter=30, seed=3)
    b = factorize(rand_matrix, 5, init=init, max_iter=30, seed=3)
    assert np.array_equal(a.W, b.W) and np.array_equal(a.H, b.H)
    assert np.array_equal(a.history, b.history)


def test_random_init_depends_on_seed(rand_matrix: np.ndarray) -> None:
    a = factorize(rand_matrix, 5, init="random", max_iter=0, seed=1)
    b = factorize(rand_matrix, 5, init="random", max_iter=0, seed=2)
    assert not np.array_equal(a.W, b.W)


def test_deep_bit_identical(rand_matrix: np.ndarray) -> None:
    a = factorize_deep(rand_matrix, [8, 4, 2], max_iter=20, fine_tune_iter=15)
    b = factorize_deep(rand_matrix, [8, 4, 2], max_iter=20, fine_tune_iter=15)
    for x, y in zip([*a.Ws, *a.Hs], [*b.Ws, *b.Hs], strict=True):
        assert np.array_equal(x, y)


# ---------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("solver", SOLVERS)
def test_float32_and_float64_agree(solver: str) -> None:
    X = camera()[::4, ::4]
    r64 = factorize(X, 10, solver=solver, max_iter=50, tol=0)
    r32 = factorize(X.astype(np.float32), 10, solver=solver, max_iter=50, tol=0)
    assert r32.W.dtype == np.float32 and r32.H.dtype == np.float32
    assert r64.W.dtype == np.float64
    assert r32.history.dtype == np.float64
    assert abs(r32.history[-1] - r64.history[-1]) < 1e-3
    assert r32.history[-1] == pytest.approx(rel_err(X, r32.W, r32.H), abs=1e-5)


def test_float32_error_is_accurate_when_tiny(planted: np.ndarray) -> None:
    X = planted.astype(np.float32)
    res = factorize(X, 5, max_iter=400, tol=0)
    assert res.history[-1] == pytest.approx(rel_err(X, res.W, res.H), rel=0.05, abs=1e-7)


def test_deep_dtype_preserved() -> None:
    X = camera()[::8, ::8].astype(np.float32)
    d = factorize_deep(X, [10, 5], max_iter=20, fine_tune_iter=5)
    assert all(A.dtype == np.float32 for A in (*d.Ws, *d.Hs))
    assert d.reconstruct().dtype == np.float32


@pytest.mark.parametrize(
    "X", [np.arange(12).reshape(3, 4), (np.arange(12).reshape(3, 4) % 2).astype(bool)]
)
def test_integer_and_bool_become_float64(X: np.ndarray) -> None:
    res = factorize(X, 2, max_iter=5)
    assert res.W.dtype == np.float64 and res.H.dtype == np.float64


# ------------------------------------------------------ callback and stopping


def test_callback_sees_every_stage(rand_matrix: np.ndarray) -> None:
    seen: list[tuple[str, int, float]] = []
    d = factorize_deep(
        rand_matrix,
        [6, 4, 2],
        max_iter=5,
        tol=0,
        fine_tune_iter=4,
        callback=lambda s, i, e: seen.append((s, i, e)),
    )
    stages = [s for s, _, _ in seen]
    assert stages == ["layer1"] * 5 + ["layer2"] * 5 + ["layer3"] * 5 + ["fine-tune"] * 4
    assert [i for s, i, _ in seen if s == "layer2"] == [1, 2, 3, 4, 5]
    layer1 = [e for s, _, e in seen if s == "layer1"]
    assert layer1 == list(d.layers[0].history[1:])
    assert all(isinstance(e, float) for _, _, e in seen)


def test_a_callback_with_a_fourth_argument_sees_the_current_factors(
    rand_matrix: np.ndarray,
) -> None:
    X = rand_matrix
    seen: dict[tuple[str, int], tuple[float, object]] = {}

    def watch(stage: str, it: int, err: float, factors: Any) -> None:
        seen[stage, it] = (err, factors())

    d = factorize_deep(X, [6, 3], max_iter=6, tol=0, fine_tune_iter=3, callback=watch)
    # A layer's factors give the error reported with them (the best iterate so far).
    err, (W, H) = seen["layer1", 4]
    assert rel_err(X, W, H) == pytest.approx(err, rel=1e-9)
    assert rel_err(X, W, H) == pytest.approx(d.layers[0].history[4], rel=1e-9)
    # Fine-tuning shows the whole model; its deepest reconstruction has the reported error.
    err, model = seen["fine-tune", 3]
    assert isinstance(model, Model)
    R = model.reconstruct(2)
    assert np.linalg.norm(X - R) / np.linalg.norm(X) == pytest.approx(err, rel=1e-6)
    # Copies: the run goes on unchanged.
    W[...] = 0
    assert np.any(d.layers[0].W)


def test_callback_can_stop_a_stage(rand_matrix: np.ndarray) -> None:
    def stop_layer1_at_3(stage: str, it: int, err: float) -> bool:
        return stage == "layer1" and it == 3

    d = factorize_deep(
        rand_matrix, [6, 3], max_iter=20, tol=0, fine_tune_iter=5, callback=stop_layer1_at_3
    )
    assert d.layers[0].n_iter == 3 and not d.layers[0].converged
    assert d.layers[1].n_iter == 20
    assert d.fine_tune_n_iter == 5

    d2 = factorize_deep(
        rand_matrix,
        [6, 3],
        max_iter=5,
        tol=0,
        fine_tune_iter=50,
        callback=lambda s, i, e: s == "fine-tune" and i == 2,
    )
    assert d2.fine_tune_n_iter == 2 and not d2.converged

    single = factorize(rand_matrix, 4, max_iter=50, tol=0, callback=lambda s, i, e: i >= 4)
    assert single.n_iter == 4


def test_target_error_stops_early(rand_matrix: np.ndarray) -> None:
    full = factorize(rand_matrix, 6, max_iter=100, tol=0)
    target = float(full.history[10])
    res = factorize(rand_matrix, 6, max_iter=100, tol=0, target_error=target)
    assert res.converged
    assert res.n_iter <= 10
    assert res.history[-1] <= target < res.history[-2]


def test_tol_stops_and_reports_convergence(rand_matrix: np.ndarray) -> None:
    res = factorize(rand_matrix, 6, max_iter=5000, tol=1e-3)
    assert res.converged and res.n_iter < 5000
    e = res.history
    k = min(res.n_iter, 5)
    assert (e[-1 - k] - e[-1]) <= k * 1e-3 * e[-1 - k]
    longer = factorize(rand_matrix, 6, max_iter=5000, tol=1e-6)
    assert longer.n_iter > res.n_iter and longer.history[-1] < res.history[-1]


def test_deep_target_error_stops_fine_tune(rand_matrix: np.ndarray) -> None:
    free = factorize_deep(rand_matrix, [8, 4], max_iter=30, tol=0, fine_tune_iter=60)
    target = float(free.fine_tune_history[5])
    d = factorize_deep(
        rand_matrix, [8, 4], max_iter=30, tol=0, fine_tune_iter=60, target_error=target
    )
    assert d.converged and d.fine_tune_n_iter <= 5
    assert d.fine_tune_history[-1] <= target


def test_mu_start_has_no_exact_zeros(rand_matrix: np.ndarray) -> None:
    res = factorize(rand_matrix, 6, solver="mu", init="nndsvd", max_iter=0)
    assert np.all(res.W > 0) and np.all(res.H > 0)
    plain = factorize(rand_matrix, 6, solver="hals", init="nndsvd", max_iter=0)
    assert np.any(plain.W == 0) or np.any(plain.H == 0)


# ----------------------------------------------------------------------- memory


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocked_errors_match_the_full_residual(dtype: type) -> None:
    rng = np.random.default_rng(7)
    X = rng.random((700, 300)).astype(dtype)
    W, H = rng.random((700, 6)).astype(dtype), rng.random((6, 300)).astype(dtype)
    X64, R = X.astype(np.float64), W.astype(np.float64) @ H.astype(np.float64)
    assert _linalg.squared_norm(X) == pytest.approx(float(np.sum(X64**2)), rel=1e-13)
    assert _linalg.residual_squared_norm(X, W, H) == pytest.approx(
        float(np.sum((X64 - R) ** 2)), rel=1e-12
    )
    assert _linalg.factor_relative_error(X, W, H) == pytest.approx(
        float(np.linalg.norm(X64 - R) / np.linalg.norm(X64)), rel=1e-12
    )
    Z = np.zeros_like(X)
    assert _linalg.factor_relative_error(Z, W * 0, H) == 0.0
    assert _linalg.factor_relative_error(Z, W, H) == float("inf")


def test_truncated_svd_of_float32_needs_no_float64_copy() -> None:
    X = camera().astype(np.float32)
    a = _linalg.truncated_svd(X, 20, np.random.default_rng(0))
    b = _linalg.truncated_svd(X.astype(np.float64), 20, np.random.default_rng(0))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12)
    big = np.tile(X, (3, 2))  # 1536 x 1024, 6 MiB
    peak = traced_peak(lambda: _linalg.truncated_svd(big, 20, np.random.default_rng(0)))
    assert peak < big.nbytes / 2  # a float64 copy would be twice X


def test_deep_factorisation_of_float32_makes_no_float64_copy() -> None:
    X = np.tile(camera().astype(np.float32), (3, 2))  # 1536 x 1024, 6 MiB
    peak = traced_peak(lambda: factorize_deep(X, [16, 8], max_iter=2, fine_tune_iter=1))
    assert peak < X.nbytes  # a float64 copy of X (or W H in float64) is twice X
