"""Initialisations on data of low rank, and the like-seed Semi-NMF SVD start.

Issue 11, class 1: every rank up to min(m, n) must work on every kind of data
with every init and both methods. Small matrices take LAPACK's exact SVD, so
the bugs live above 128 rows and columns, where the truncated SVD comes from
the Gram matrix (up to 256) or the randomized range finder: on data of rank
below the rank asked for, the range finder returned fewer directions than asked
and NNDSVD indexed past them (``factorize(np.ones((129, 129)), 2)`` raised
IndexError). The cases below sit on each path, tall and wide.

Issue 17: the like-seed pipeline stacks Gillis-Kumar starts; from the second
layer on, its input has tied singular values, and the write-up's ARPACK start
picks a random subspace among the tied ones. The tie-break is drawn from the
seed; the tests compare with an independent implementation of the heuristic on
what does not depend on the choice.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from mlnmf_cli.engine import factorize, factorize_deep
from mlnmf_cli.engine._linalg import truncated_svd

INITS = ("nndsvda", "nndsvd", "random", "svd")
METHODS = ("nmf", "semi")
CAMERA = Path(__file__).resolve().parents[1] / "sample_images" / "camera.png"


def _camera_nearest_upscaled() -> np.ndarray:
    """The sample photo scaled down 4x and back up by nearest neighbour (rank <= 128)."""
    with Image.open(CAMERA) as im:
        grey = im.convert("L")
        small = grey.resize((grey.width // 4, grey.height // 4), Image.Resampling.BOX)
        up = small.resize((small.width * 4, small.height * 4), Image.Resampling.NEAREST)
    return np.asarray(up, dtype=np.float64)[:300, :200] / 255.0


def _checkerboard(m: int, n: int) -> np.ndarray:
    return (np.add.outer(np.arange(m), np.arange(n)) % 2).astype(np.float64)


def _gradient(m: int, n: int) -> np.ndarray:
    return np.add.outer(np.arange(m, dtype=np.float64), np.arange(n)) / (m + n)


def _duplicate_rows(m: int, n: int) -> np.ndarray:
    return np.tile(np.random.default_rng(3).random((1, n)), (m, 1))


def _rank3_float32(m: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(4)
    return (rng.random((m, 3)) @ rng.random((3, n))).astype(np.float32)


# name -> (matrix, its rank)
LOW_RANK: dict[str, Callable[[], tuple[np.ndarray, int]]] = {
    "flat 129x129 (Gram path)": lambda: (np.ones((129, 129)), 1),
    "flat 300x200 (randomized)": lambda: (np.full((300, 200), 0.5), 1),
    "flat 140x600 wide": lambda: (np.ones((140, 600)), 1),
    "zero 300x260": lambda: (np.zeros((300, 260)), 0),
    "gradient 300x260": lambda: (_gradient(300, 260), 2),
    "gradient 200x700 wide": lambda: (_gradient(200, 700), 2),
    "checkerboard 300x300": lambda: (_checkerboard(300, 300), 2),
    "checkerboard 150x150 (Gram path)": lambda: (_checkerboard(150, 150), 2),
    "duplicate rows 150x200": lambda: (_duplicate_rows(150, 200), 1),
    "rank 3 float32 300x300": lambda: (_rank3_float32(300, 300), 3),
    "tiny flat 200x200": lambda: (np.full((200, 200), 1e-300), 1),
    "huge flat 200x200": lambda: (np.full((200, 200), 1e300), 1),
    "float32 huge flat 200x200": lambda: (np.full((200, 200), 1e30, dtype=np.float32), 1),
}


def strict() -> None:
    """Inside catch_warnings: any warning is an error."""
    warnings.simplefilter("error")


def _check_factors(X: np.ndarray, W: np.ndarray, H: np.ndarray, r: int, method: str) -> None:
    assert W.shape == (X.shape[0], r) and H.shape == (r, X.shape[1])
    assert W.dtype == X.dtype and H.dtype == X.dtype
    assert np.all(np.isfinite(W)) and np.all(np.isfinite(H))
    assert np.all(H >= 0)
    if method == "nmf":
        assert np.all(W >= 0)


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("method", METHODS)
def test_flat_129_image_factorizes_with_every_init(init: str, method: str) -> None:
    """The issue's own case: it raised IndexError with nndsvd(a)."""
    X = np.ones((129, 129))
    with warnings.catch_warnings():
        strict()
        res = factorize(X, 2, init=init, method=method)
    _check_factors(X, res.W, res.H, 2, method)
    assert res.history[-1] < 1e-6


@pytest.mark.parametrize("case", sorted(LOW_RANK))
@pytest.mark.parametrize("init", INITS)
def test_low_rank_data_at_ranks_above_its_rank(case: str, init: str) -> None:
    """Ranks above the data's own, on the randomized and Gram paths (small ranks) and
    the exact path (rank min(m, n)), with both methods: finite factors, no warning,
    and a start that already fits the data when the init is SVD-based and the rank
    covers the data's (nndsvd: the data's components come first, the rest add
    next to nothing; svd with Semi-NMF: W H is the rank-(r-1) truncation)."""
    X, data_rank = LOW_RANK[case]()
    small = min(X.shape)
    for method in METHODS:
        for r in (2, data_rank + 2, 8, small):
            with warnings.catch_warnings():
                strict()
                res = factorize(X, r, init=init, method=method, max_iter=3)
            _check_factors(X, res.W, res.H, r, method)
            assert np.all(np.isfinite(res.history))
            if not X.any():
                assert res.history[0] == 0.0
            elif (init == "nndsvd" and data_rank == 1) or (
                init == "svd" and method == "semi" and r - 1 >= data_rank
            ):
                assert res.history[0] < 1e-5, (method, r, res.history[0])


def test_nearest_upscaled_photo_default_pipeline() -> None:
    """A photo scaled down and back up (nearest) with its shorter side over 128 px:
    the default multilayer pipeline crashed; now it fits about as well as on the
    photo itself (the data has rank <= 75 here, so rank 64 is already close)."""
    X = _camera_nearest_upscaled()
    with warnings.catch_warnings():
        strict()
        res = factorize_deep(X, [64, 32, 16], fine_tune_iter=20, max_iter=30)
    assert all(np.isfinite(res.depth_errors))
    assert res.depth_errors[0] < 0.15
    for W in res.Ws:
        assert np.all(W >= 0) and np.all(np.isfinite(W))


@pytest.mark.parametrize("init", INITS)
def test_low_rank_deep_every_init(init: str) -> None:
    """Deeper layers factor coefficients of even lower rank (a flat image's H is
    rank 1 at every layer): every layer's ranks go past the data's."""
    X = np.ones((260, 300))
    for method in METHODS:
        with warnings.catch_warnings():
            strict()
            res = factorize_deep(X, [20, 10, 4], init=init, method=method, max_iter=5)
        assert all(np.isfinite(res.depth_errors))
        assert all(np.all(np.isfinite(A)) for A in [*res.Ws, *res.Hs])


@pytest.mark.parametrize("shape", [(300, 200), (200, 300), (140, 140), (129, 600)])
@pytest.mark.parametrize("k", [1, 3, 30])
def test_truncated_svd_always_gives_k_orthonormal_triplets(shape: tuple, k: int) -> None:
    """On data of rank 2 (and zero data) the truncated SVD gives exactly k triplets,
    U and V orthonormal, singular values sorted and >= 0, and U S V^T reproduces X
    once k covers its rank; repeated with the same seed, the same triplets."""
    rng = np.random.default_rng(0)
    m, n = shape
    for X in (rng.random((m, 2)) @ rng.random((2, n)), np.zeros(shape)):
        U, s, Vt = truncated_svd(X, k, np.random.default_rng(5))
        assert U.shape == (m, k) and s.shape == (k,) and Vt.shape == (k, n)
        assert np.allclose(U.T @ U, np.eye(k), atol=1e-8)
        assert np.allclose(Vt @ Vt.T, np.eye(k), atol=1e-8)
        assert np.all(s >= 0) and np.all(np.diff(s) <= 1e-12 * max(s[0], 1.0))
        if k >= 2:
            assert np.allclose((U * s) @ Vt, X, atol=1e-9 * max(1.0, np.abs(X).max()))
        again = truncated_svd(X, k, np.random.default_rng(5))
        assert all(np.array_equal(a, b) for a, b in zip((U, s, Vt), again, strict=True))


@st.composite
def low_rank_problems(draw: st.DrawFn) -> dict:
    m = draw(st.integers(129, 280))
    n = draw(st.integers(129, 280))
    return {
        "shape": (m, n),
        "data_rank": draw(st.integers(0, 4)),
        "rank": draw(st.sampled_from([1, 2, 3, 5, 9, 17, min(m, n) // 2, min(m, n)])),
        "init": draw(st.sampled_from(INITS)),
        "method": draw(st.sampled_from(METHODS)),
        "dtype": draw(st.sampled_from([np.float32, np.float64])),
        "exponent": draw(st.integers(-60, 60)),
        "seed": draw(st.integers(0, 2**16)),
    }


def _low_rank_matrix(p: dict) -> np.ndarray:
    """Random data of rank p["data_rank"] whose second half of columns repeats the first."""
    rng = np.random.default_rng(p["seed"])
    m, n = p["shape"]
    d = p["data_rank"]
    X = rng.random((m, d)) @ rng.random((d, n))
    X[:, n // 2 :] = X[:, : n - n // 2]
    return np.ldexp(X, p["exponent"]).astype(p["dtype"])


@fuzz_settings(25)
@given(low_rank_problems())
def test_low_rank_property(p: dict) -> None:
    """Random data of rank 0-4 (with exact duplicate columns) at any rank, any init,
    either method, either dtype, any magnitude: finite factors of the right signs,
    no warning."""
    X = _low_rank_matrix(p)
    r = max(p["rank"], 2) if p["init"] == "svd" else p["rank"]
    with warnings.catch_warnings():
        strict()
        res = factorize(X, r, init=p["init"], method=p["method"], max_iter=2, seed=p["seed"])
    _check_factors(X, res.W, res.H, r, p["method"])
    assert np.all(np.isfinite(res.history))


@fuzz_settings(10)
@given(low_rank_problems(), st.integers(129, 200))
def test_low_rank_deep_property(p: dict, r1: int) -> None:
    """The same data through two layers whose first rank is above 128, so that the
    second layer's input (coefficients of low rank) takes the Gram or randomized
    path too, then fine-tuning: finite factors and errors, no warning."""
    X = _low_rank_matrix(p)
    r1 = min(r1, min(X.shape))
    r2 = max(min(p["rank"], r1), 2)
    with warnings.catch_warnings():
        strict()
        res = factorize_deep(
            X, [r1, r2], init=p["init"], method=p["method"], max_iter=2,
            fine_tune_iter=2, seed=p["seed"],
        )  # fmt: skip
    assert all(np.isfinite(res.depth_errors))
    for W, H in zip(res.Ws, res.Hs, strict=True):
        assert np.all(np.isfinite(W)) and np.all(np.isfinite(H)) and np.all(H >= 0)


# --------------------------------------------------------------------------- issue 17

LIKE_SEED_OPTIONS = dict(
    method="semi", init="svd", normalize=False, max_iter=0, fine_tune=False, refit=False
)


def gillis_kumar(M: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Independent Gillis-Kumar start: from the full SVD, the rank-(r-1) truncation
    A B (A = U S), each row of B signed so that its smallest entry is as large as
    possible, W = [A, -A 1] (r = 2: [A, -A]), H = [B; 0] minus the column-wise
    negative part of B."""
    U, s, Vt = np.linalg.svd(M, full_matrices=False)
    A, B = U[:, : r - 1] * s[: r - 1], Vt[: r - 1].copy()
    for i in range(r - 1):
        if -B[i].max() > B[i].min():  # min(-b) > min(b): the other sign is better
            B[i], A[:, i] = -B[i], -A[:, i]
    extra = -A if r == 2 else -A @ np.ones((r - 1, 1))
    shift = np.clip(B.min(axis=0), None, 0.0)
    return np.hstack([A, extra]), np.vstack([B, np.zeros((1, M.shape[1]))]) - shift


def _best_error(M: np.ndarray, k: int) -> float:
    s = np.linalg.svd(M, compute_uv=False)
    return float(np.sqrt(np.sum(s[k:] ** 2)))


def _orthonormal(m: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.linalg.qr(rng.standard_normal((m, k)))[0]


def _tied_matrix(m: int = 40, n: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """U diag(s) V^T with six singular values tied at 1 after two distinct ones."""
    rng = np.random.default_rng(7)
    s = np.array([6.0, 3.0, 1, 1, 1, 1, 1, 1, 0.4, 0.1])
    return (_orthonormal(m, s.size, rng) * s) @ _orthonormal(n, s.size, rng).T, s


def test_like_seed_depth1_matches_gillis_kumar_and_depth2_is_a_best_truncation() -> None:
    """Depth 1 (distinct singular values) equals the independent implementation to
    precision. Its coefficients have singular values tied at 1, so at depth 2 the
    truncation is not unique: whatever subspace the seed picks, W2 H2 is a best
    rank-(r2-1) approximation of H1 (error = the SVD floor), and the depth-2 model
    is W1 W2 H2 = W1 P H1 for an orthogonal projection P of rank r2-1."""
    rng = np.random.default_rng(11)
    X = rng.random((60, 70))
    r1, r2 = 12, 6
    W_ref, H_ref = gillis_kumar(X, r1)
    s_h1 = np.linalg.svd(H_ref, compute_uv=False)
    assert np.sum(np.abs(s_h1 - 1.0) < 1e-12) >= r2  # the ties reach past r2 - 1
    depth2 = []
    for seed in range(4):
        res = factorize_deep(X, [r1, r2], seed=seed, **LIKE_SEED_OPTIONS)
        W1, W2 = res.Ws
        H1, H2 = res.Hs
        np.testing.assert_allclose(W1, W_ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(H1, H_ref, rtol=1e-10, atol=1e-12)
        fit = np.linalg.norm(H1 - W2 @ H2)
        assert fit == pytest.approx(_best_error(H1, r2 - 1), rel=1e-9)
        assert np.linalg.matrix_rank(W2 @ H2, tol=1e-9) == r2 - 1
        W_gk, H_gk = gillis_kumar(H1, r2)
        # Same layer quality as the reference, whatever the tied subspace chosen.
        assert fit == pytest.approx(np.linalg.norm(H1 - W_gk @ H_gk), rel=1e-9)
        assert np.all(H2 >= 0)
        depth2.append(res.depth_errors[1])
    # The tie-break comes from the seed: different seeds, different subspaces.
    assert len({round(e, 12) for e in depth2}) > 1
    again = factorize_deep(X, [r1, r2], seed=2, **LIKE_SEED_OPTIONS)
    assert again.depth_errors[1] == depth2[2]


def test_svd_start_on_tied_singular_values_is_a_gillis_kumar_start() -> None:
    """A matrix whose truncation cuts through tied singular values: for every seed the
    start is a Gillis-Kumar start of some valid rank-(r-1) truncation: B = H[:-1] -
    H[-1] has orthonormal rows inside the leading singular subspace, each signed
    by the rule, W = [X B^T, -X B^T 1], W H = X B^T B at the SVD floor."""
    X, s = _tied_matrix()
    r = 6  # keeps 5: the two distinct ones and 3 of the 6 tied ones
    floor = float(np.sqrt(np.sum(s[r - 1 :] ** 2)))
    _, _, Vt = np.linalg.svd(X)
    lead = Vt[:8]  # span of the distinct and the tied singular values
    subspaces = []
    for seed in range(3):
        res = factorize(X, r, seed=seed, method="semi", init="svd", max_iter=0)
        W, H = res.W, res.H
        B = H[:-1] - H[-1]
        np.testing.assert_allclose(B @ B.T, np.eye(r - 1), atol=1e-10)
        np.testing.assert_allclose(B - (B @ lead.T) @ lead, 0.0, atol=1e-10)
        assert np.all(B.min(axis=1) >= (-B).min(axis=1) - 1e-12)
        np.testing.assert_allclose(W[:, :-1], X @ B.T, atol=1e-10)
        np.testing.assert_allclose(W[:, -1], -W[:, :-1].sum(axis=1), atol=1e-10)
        assert np.linalg.norm(X - W @ H) == pytest.approx(floor, rel=1e-9)
        subspaces.append(B.T @ B)
    assert not np.allclose(subspaces[0], subspaces[1], atol=1e-6)


def test_svd_start_without_ties_is_unchanged_by_the_seed() -> None:
    """Distinct singular values: nothing is drawn, every seed gives LAPACK's truncation
    and the independent implementation's factors."""
    X = np.random.default_rng(12).standard_normal((30, 25))
    W_ref, H_ref = gillis_kumar(X, 7)
    for seed in (0, 1, 99):
        res = factorize(X, 7, seed=seed, method="semi", init="svd", max_iter=0)
        np.testing.assert_allclose(res.W, W_ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(res.H, H_ref, rtol=1e-10, atol=1e-12)
