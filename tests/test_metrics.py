"""Tests of mlnmf_cli.engine.metrics."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from mlnmf_cli.engine import metrics
from mlnmf_cli.engine.metrics import (
    assignment,
    hoyer_sparsity,
    matched_cosine,
    principal_cosines,
    psnr,
    relative_error,
    subspace_similarity,
    svd_floor,
    svd_floors,
)
from mlnmf_cli.errors import ParameterError


@pytest.fixture(scope="module")
def factors() -> np.ndarray:
    return np.random.default_rng(0).random((100, 8))


def permute_and_rescale(A: np.ndarray, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return A[:, rng.permutation(A.shape[1])] * rng.uniform(0.1, 10.0, A.shape[1])


def test_module_exports() -> None:
    for name in metrics.__all__:
        assert callable(getattr(metrics, name))


# ----------------------------------------------------------------- errors, psnr


def test_relative_error_known_values() -> None:
    X = np.array([[3.0, 0.0], [0.0, 4.0]])
    assert relative_error(X, X) == 0.0
    assert relative_error(X, np.zeros_like(X)) == 1.0
    assert relative_error(X, X * 0.9) == pytest.approx(0.1)
    assert relative_error(np.zeros((2, 2)), np.zeros((2, 2))) == 0.0
    assert relative_error(np.zeros((2, 2)), np.ones((2, 2))) == math.inf
    assert relative_error(X.astype(np.float32), X * 0.5) == pytest.approx(0.5)


def test_relative_error_rejects_mismatched_shapes() -> None:
    with pytest.raises(
        ParameterError, match=r"^R must have the shape of X \(2, 2\), got \(2, 3\)$"
    ):
        relative_error(np.ones((2, 2)), np.ones((2, 3)))


def test_psnr_known_values() -> None:
    X = np.zeros((4, 5))
    assert psnr(X, X + 0.1) == pytest.approx(20.0)
    assert psnr(X, X + 0.01) == pytest.approx(40.0)
    assert psnr(X, X + 25.5, peak=255.0) == pytest.approx(20.0)
    value = psnr(X, X)
    assert value == float("inf") and isinstance(value, float)


@pytest.mark.parametrize("peak", [0, -1.0, float("nan"), float("inf"), "1"])
def test_psnr_rejects_bad_peak(peak: object) -> None:
    with pytest.raises(ParameterError, match=r"^peak must be a number > 0, got "):
        psnr(np.ones((2, 2)), np.ones((2, 2)), peak=peak)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ hoyer


def test_hoyer_known_values() -> None:
    one_hot = np.zeros((5, 5))
    one_hot[2, 3] = 7.0
    assert hoyer_sparsity(one_hot) == pytest.approx(1.0)
    assert hoyer_sparsity(np.full((3, 4), 2.0)) == pytest.approx(0.0, abs=1e-12)
    assert hoyer_sparsity(np.zeros((3, 3))) == 0.0
    assert hoyer_sparsity(np.array([[1.0, 1.0, 0.0, 0.0]])) == pytest.approx(2 - math.sqrt(2))
    assert hoyer_sparsity(np.array([[-1.0, 1.0, 0.0, 0.0]])) == pytest.approx(2 - math.sqrt(2))
    assert hoyer_sparsity(np.array([[5.0]])) == 0.0


def test_hoyer_is_in_unit_interval() -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):
        A = rng.random((6, 7)) ** rng.uniform(0.1, 20)
        assert 0.0 <= hoyer_sparsity(A) <= 1.0


# -------------------------------------------------------------------- svd floor


def test_svd_floor_known_values() -> None:
    X = np.diag([3.0, 2.0, 1.0])
    assert svd_floor(X, 1) == pytest.approx(math.sqrt(5 / 14))
    assert svd_floor(X, 2) == pytest.approx(math.sqrt(1 / 14))
    assert svd_floor(X, 3) == pytest.approx(0.0, abs=1e-15)
    assert svd_floor(np.zeros((3, 4)), 2) == 0.0


def test_svd_floors_match_single_floors() -> None:
    X = np.random.default_rng(9).random((12, 9))
    assert svd_floors(X, [1, 4, 9]) == pytest.approx([svd_floor(X, r) for r in (1, 4, 9)])
    assert svd_floors(np.zeros((3, 3)), [1, 2]) == [0.0, 0.0]
    with pytest.raises(ParameterError):
        svd_floors(X, [2, 10])


def test_svd_floor_matches_truncated_svd() -> None:
    X = np.random.default_rng(3).random((30, 20))
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    best = (U[:, :4] * s[:4]) @ Vt[:4]
    assert svd_floor(X, 4) == pytest.approx(relative_error(X, best), rel=1e-10)


def _camera() -> np.ndarray:
    from pathlib import Path

    from PIL import Image

    path = Path(__file__).parent.parent / "sample_images" / "camera.png"
    return np.asarray(Image.open(path), dtype=np.float64) / 255


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_svd_floors_large_matrix_path_matches_exact_svd(dtype: type) -> None:
    # exact_max_entries=0 forces the path taken by matrices of more than
    # EXACT_FLOOR_MAX_ENTRIES entries (randomized SVD and explicit residuals).
    X = _camera()[:300, :400].astype(dtype)
    ranks = [1, 5, 20, 40]
    exact = svd_floors(X, ranks)
    estimated = svd_floors(X, ranks, exact_max_entries=0)
    assert estimated == pytest.approx(exact, rel=1e-7)
    # The residual of an actual rank-r matrix: never below the Eckart-Young floor.
    assert all(e >= x * (1 - 1e-12) for e, x in zip(estimated, exact, strict=True))
    # Deterministic (fixed seed), and the same ranks in any order give the same values.
    assert svd_floors(X, ranks[::-1], exact_max_entries=0) == estimated[::-1]
    assert svd_floors(np.zeros((300, 400), dtype), [3], exact_max_entries=0) == [0.0]
    assert metrics.EXACT_FLOOR_MAX_ENTRIES >= 1 << 20


def test_svd_floors_large_matrix_path_on_a_flat_spectrum() -> None:
    # No decay at all (uniform noise) is the hard case: still within 0.1%.
    X = np.random.default_rng(5).random((200, 300))
    exact = svd_floors(X, [30, 10])
    estimated = svd_floors(X, [30, 10], exact_max_entries=0)
    assert estimated == pytest.approx(exact, rel=1e-3)
    assert all(e >= x * (1 - 1e-12) for e, x in zip(estimated, exact, strict=True))


def test_svd_floors_large_matrix_path_full_rank() -> None:
    X = _camera()[:200, :160]
    assert svd_floors(X, [160], exact_max_entries=0)[0] == pytest.approx(0.0, abs=1e-12)


def test_svd_floors_large_matrix_path_copies_nothing_large() -> None:
    import tracemalloc

    X = _camera()[:, :400].astype(np.float32)
    X = np.block([[X, X, X], [X, X, X], [X, X, X]])  # 1536 x 1200
    tracemalloc.start()
    try:
        svd_floors(X, [10], exact_max_entries=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < X.nbytes / 2  # a float64 copy alone would be twice X


@pytest.mark.parametrize(
    ("rank", "message"),
    [
        (0, "rank must be between 1 and min(m, n) = 3, got 0"),
        (4, "rank must be between 1 and min(m, n) = 3, got 4"),
        (1.5, "rank must be an integer, got 1.5"),
    ],
)
def test_svd_floor_rejects_bad_rank(rank: object, message: str) -> None:
    with pytest.raises(ParameterError) as info:
        svd_floor(np.ones((3, 5)), rank)  # type: ignore[arg-type]
    assert str(info.value) == message


# ------------------------------------------------------------------- similarity


def test_identical_factors_have_similarity_one(factors: np.ndarray) -> None:
    assert subspace_similarity(factors, factors) == pytest.approx(1.0)
    assert matched_cosine(factors, factors) == pytest.approx(1.0)
    assert np.allclose(principal_cosines(factors, factors), 1.0)


def test_similarity_invariant_to_permutation_and_scale(factors: np.ndarray) -> None:
    other = np.random.default_rng(4).random((100, 8))
    moved = permute_and_rescale(factors)
    assert subspace_similarity(moved, factors) == pytest.approx(1.0)
    assert matched_cosine(moved, factors) == pytest.approx(1.0)
    assert subspace_similarity(moved, other) == pytest.approx(
        subspace_similarity(factors, other), rel=1e-9
    )
    assert matched_cosine(moved, other) == pytest.approx(matched_cosine(factors, other))


def test_independent_factors_are_less_similar(factors: np.ndarray) -> None:
    other = np.random.default_rng(5).random((100, 8))
    sub = subspace_similarity(factors, other)
    mat = matched_cosine(factors, other)
    assert 0.0 <= sub < 0.8
    assert 0.0 <= mat < 0.9
    signed = np.random.default_rng(6).standard_normal((100, 8))
    assert subspace_similarity(signed, np.random.default_rng(7).standard_normal((100, 8))) < 0.5


def test_principal_cosines_robust_to_zero_and_dependent_columns(factors: np.ndarray) -> None:
    A = np.column_stack([factors[:, :3], np.zeros(100), factors[:, 0] * 2, factors[:, 1]])
    c = principal_cosines(A, factors[:, :3])
    assert c.shape == (3,)
    assert np.allclose(c, 1.0)
    assert np.all((c >= 0) & (c <= 1))
    assert principal_cosines(np.zeros((100, 3)), factors).shape == (0,)
    assert subspace_similarity(np.zeros((100, 3)), factors) == 0.0
    assert matched_cosine(np.zeros((100, 3)), factors) == 0.0


def test_principal_cosines_known_angle() -> None:
    A = np.array([[1.0], [0.0]])
    B = np.array([[1.0], [1.0]])
    assert principal_cosines(A, B) == pytest.approx([1 / math.sqrt(2)])
    assert subspace_similarity(A, np.array([[0.0], [3.0]])) == pytest.approx(0.0, abs=1e-15)


def test_matched_cosine_uses_one_to_one_matching() -> None:
    e = np.eye(3)
    # Both columns of B are closest to e0, but e0 can be matched only once.
    B = np.column_stack([e[:, 0] + 0.1 * e[:, 1], e[:, 0] + 0.1 * e[:, 2]])
    expected = (1 / math.sqrt(1.01) + 0.1 / math.sqrt(1.01)) / 2
    assert matched_cosine(B, e[:, :2]) == pytest.approx(expected)
    assert matched_cosine(e[:, :2], B) == pytest.approx(expected)


def test_assignment_matches_brute_force() -> None:
    rng = np.random.default_rng(8)
    for shape in [(4, 4), (3, 5), (5, 3), (6, 6), (1, 4)]:
        C = rng.random(shape)
        rows, cols = assignment(C)
        k = min(shape)
        assert len(rows) == len(cols) == k
        assert len(set(rows)) == len(set(cols)) == k
        if shape[0] <= shape[1]:
            best = min(
                sum(C[i, p[i]] for i in range(shape[0]))
                for p in itertools.permutations(range(shape[1]), shape[0])
            )
        else:
            best = min(
                sum(C[p[j], j] for j in range(shape[1]))
                for p in itertools.permutations(range(shape[0]), shape[1])
            )
        assert C[rows, cols].sum() == pytest.approx(best)


def test_similarity_rejects_different_heights(factors: np.ndarray) -> None:
    with pytest.raises(ParameterError) as info:
        subspace_similarity(factors, factors[:50])
    assert str(info.value) == (
        "A and B must have the same number of rows (features live in the same space), "
        "got 100 and 50"
    )
    with pytest.raises(ParameterError):
        matched_cosine(factors, factors[:50])


def test_metrics_reject_nan_and_non_2d() -> None:
    with pytest.raises(ParameterError, match=r"^A must contain only finite values$"):
        hoyer_sparsity(np.array([[np.nan]]))
    with pytest.raises(ParameterError, match=r"^A must be a 2-D array, got 1 dimension\(s\)$"):
        principal_cosines(np.ones(3), np.ones((3, 1)))
