"""Solver knobs as arguments, and encode(): non-negative least squares with a fixed dictionary."""

from __future__ import annotations

import numpy as np
import pytest

from mlnmf_cli.engine import _single, factorize
from mlnmf_cli.errors import ParameterError


@pytest.fixture(scope="module")
def rand_matrix() -> np.ndarray:
    return np.random.default_rng(0).random((40, 30))


def nnls_oracle(W: np.ndarray, X: np.ndarray) -> np.ndarray:
    optimize = pytest.importorskip("scipy.optimize")
    return np.stack([optimize.nnls(W, x, maxiter=1000)[0] for x in X.T], axis=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_encode_solves_the_nnls_problem(dtype: type) -> None:
    rng = np.random.default_rng(0)
    W = rng.random((60, 8))
    X = np.maximum(W @ rng.normal(size=(8, 25)) + 0.1 * rng.random((60, 25)), 0)
    H = _single.encode(X.astype(dtype), W.astype(dtype), max_sweeps=2000, tol=0.0)
    assert H.dtype == dtype and H.shape == (8, 25) and np.all(H >= 0)
    ref = nnls_oracle(W, X)
    loss = np.linalg.norm(X - W @ H.astype(float))
    best = np.linalg.norm(X - W @ ref)
    assert loss <= best * (1 + (1e-5 if dtype is np.float32 else 1e-9))
    if dtype is np.float64:
        assert np.allclose(H, ref, atol=1e-6)


def test_encode_recovers_exact_codes_and_handles_dead_features() -> None:
    rng = np.random.default_rng(1)
    W = rng.random((30, 5))
    W[:, 3] = 0  # a dead feature gets zero coefficients
    H_true = rng.random((5, 40))
    H_true[3] = 0
    X = W @ H_true
    H = _single.encode(X, W, tol=0.0, max_sweeps=500)
    assert np.allclose(H, H_true, atol=1e-8)
    assert not H[3].any()
    # warm start at the answer stays there; default tolerances get close
    assert np.allclose(_single.encode(X, W, H0=H_true), H_true, atol=1e-8)
    assert np.allclose(_single.encode(X, W), H_true, atol=1e-3)
    assert not _single.encode(X, np.zeros_like(W)).any()


def test_encode_with_a_signed_dictionary() -> None:
    rng = np.random.default_rng(2)
    W = rng.normal(size=(40, 6))
    X = W @ rng.random((6, 20))
    H = _single.encode(X, W, tol=0.0, max_sweeps=1000)
    assert np.all(H >= 0)
    assert np.linalg.norm(X - W @ H) <= 1e-6 * np.linalg.norm(X)


def test_max_sweeps_and_extrapolate_are_arguments(rand_matrix: np.ndarray) -> None:
    one = factorize(rand_matrix, 6, max_iter=15, tol=0, max_sweeps=1, extrapolate=False)
    many = factorize(rand_matrix, 6, max_iter=15, tol=0, max_sweeps=6, extrapolate=False)
    # more inner sweeps per iteration fit better after the same iterations
    assert many.history[-1] < one.history[-1]
    again = factorize(rand_matrix, 6, max_iter=15, tol=0, max_sweeps=1, extrapolate=False)
    assert np.array_equal(one.W, again.W)
    # nothing is left behind in module state: the default run is unchanged
    assert np.array_equal(
        factorize(rand_matrix, 6, max_iter=15, tol=0).W,
        factorize(rand_matrix, 6, max_iter=15, tol=0, max_sweeps=_single.MAX_SWEEPS).W,
    )


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "3"])
def test_max_sweeps_is_checked(rand_matrix: np.ndarray, bad: object) -> None:
    with pytest.raises(ParameterError, match=r"^max_sweeps must be an integer >= 1, got "):
        factorize(rand_matrix, 3, max_sweeps=bad)  # type: ignore[arg-type]


def test_n_sweeps_bound() -> None:
    # Gillis & Glineur: 1 + alpha (q / r + q / p), capped.
    assert _single.n_sweeps(512, 512, 64, 0.5, 100) == 1 + int(np.ceil(0.5 * (8 + 1)))
    assert _single.n_sweeps(512, 512, 64, 0.5, 3) == 3
    assert _single.n_sweeps(512, 4, 64, 0.5, 6) == 2


def test_public_encode_validates_and_solves() -> None:
    from mlnmf_cli.engine import encode

    rng = np.random.default_rng(3)
    W = rng.random((30, 4))
    H = rng.random((4, 12))
    X = (W @ H).astype(np.float32)
    got = encode(X, W)
    assert got.dtype == np.float32 and got.shape == (4, 12)
    assert np.linalg.norm(X - W @ got) <= 1e-3 * np.linalg.norm(X)
    with pytest.raises(ParameterError, match=r"W must have as many rows as X \(30\)"):
        encode(X, W[:5])
    with pytest.raises(ParameterError, match="max_sweeps"):
        encode(X, W, max_sweeps=0)


@pytest.mark.parametrize("shape", [(625, 100), (64, 1797), (64, 64)])
def test_small_matrices_start_from_the_gram_svd(
    shape: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small matrices' leading triplets come from the Gram matrix (LAPACK's full SVD is
    not called) and agree with LAPACK's."""
    from mlnmf_cli.engine import _linalg

    X = np.random.default_rng(3).random(shape)
    U0, s0, Vt0 = np.linalg.svd(X, full_matrices=False)

    def no_full_svd(*args: object, **kwargs: object) -> None:
        raise AssertionError("LAPACK SVD called")

    monkeypatch.setattr(np.linalg, "svd", no_full_svd)
    U, s, Vt = _linalg.truncated_svd(X, 10, np.random.default_rng(0))
    assert np.allclose(s, s0[:10], rtol=1e-10)
    assert np.allclose(np.abs(U.T @ U0[:, :10]), np.eye(10), atol=1e-8)
    assert np.allclose(np.abs(Vt @ Vt0[:10].T), np.eye(10), atol=1e-8)


def test_rank_deficient_small_matrix_falls_back_to_lapack() -> None:
    """Directions the data does not reach make the Gram route inaccurate: LAPACK then,
    still k orthonormal singular vectors."""
    from mlnmf_cli.engine import _linalg

    rng = np.random.default_rng(4)
    X = rng.random((50, 3)) @ rng.random((3, 40))
    U, s, Vt = _linalg.truncated_svd(X, 6, np.random.default_rng(0))
    assert U.shape == (50, 6) and Vt.shape == (6, 40)
    assert np.allclose(U.T @ U, np.eye(6), atol=1e-10)
    assert np.allclose(Vt @ Vt.T, np.eye(6), atol=1e-10)
    assert np.allclose(U[:, :3] * s[:3] @ Vt[:3], X, atol=1e-10)
