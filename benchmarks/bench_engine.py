"""Benchmark of the mlnmf engine against scikit-learn's NMF (solver "cd").

Run from the repository root::

    .venv/bin/python benchmarks/bench_engine.py [--quick] [--repeats N] [--threads N]

For each matrix and dtype, in one process and side by side:

* ``ratio``: time for mlnmf (from X, including its initialisation) to reach the
  relative error that scikit-learn's NMF(solver="cd", init="nndsvda", tol=0)
  reaches after 200 iterations, divided by scikit-learn's time for those 200
  iterations (target <= 0.33);
* ``per_iter``: mlnmf's time per iteration (initialisation excluded) divided
  by the time of the two big products X H^T and W^T X alone (target <= 1.5).

On the 2048x2048 matrix (float32) both are also measured with the inner HALS
sweeps capped at 1, 2, 3, 4 and the default: the trade-off between a cheap
iteration and few iterations.

Then the multilayer table (ranks 64, 32, 16) on the grey and colour samples.
Timings are medians over repeats. Everything goes to
benchmarks/results/engine.json. Needs scikit-learn, scikit-image, Pillow.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlnmf_cli.engine import _single, factorize, factorize_deep  # noqa: E402
from mlnmf_cli.engine.metrics import svd_floor  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "engine.json"
RATIO_TARGET = 0.33
PER_ITER_TARGET = 1.5
SKLEARN_ITER = 200
MLNMF_MAX_ITER = 2000


def load_grey() -> np.ndarray:
    return np.asarray(Image.open(ROOT / "sample_images" / "camera.png"), dtype=np.float64) / 255


def load_colour() -> np.ndarray:
    rgb = np.asarray(Image.open(ROOT / "sample_images" / "astronaut.png").convert("RGB"))
    rgb = rgb.astype(np.float64) / 255
    return np.concatenate([rgb[:, :, 0], rgb[:, :, 1], rgb[:, :, 2]], axis=1)


def load_faces() -> np.ndarray:
    from skimage import data

    faces = np.asarray(data.lfw_subset(), dtype=np.float64)
    return faces.reshape(faces.shape[0], -1).T.copy()


def load_big() -> np.ndarray:
    grey = load_grey().astype(np.float32)
    img = Image.fromarray(grey, mode="F").resize((2048, 2048), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(img, dtype=np.float64), 0.0, 1.0)


MATRICES: dict[str, tuple[Callable[[], np.ndarray], int]] = {
    "grey 512x512": (load_grey, 64),
    "colour 512x1536": (load_colour, 64),
    "faces 625x200": (load_faces, 25),
    "upscaled 2048x2048": (load_big, 128),
}


def rel_err(X: np.ndarray, W: np.ndarray, H: np.ndarray) -> float:
    Xd = np.asarray(X, dtype=np.float64)
    R = np.asarray(W, dtype=np.float64) @ np.asarray(H, dtype=np.float64)
    return float(np.linalg.norm(Xd - R) / np.linalg.norm(Xd))


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def run_sklearn(X: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.decomposition import NMF

    model = NMF(rank, init="nndsvda", solver="cd", max_iter=SKLEARN_ITER, tol=0, random_state=0)
    W = model.fit_transform(X)
    return W, model.components_


def products_time(X: np.ndarray, rank: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    H = rng.random((rank, X.shape[1])).astype(X.dtype)
    Wt = rng.random((rank, X.shape[0])).astype(X.dtype)
    P1 = np.empty((rank, X.shape[0]), X.dtype)
    P2 = np.empty((rank, X.shape[1]), X.dtype)

    def both() -> None:
        np.dot(H, X.T, out=P1)
        np.dot(Wt, X, out=P2)

    both()
    return timed(both, max(5, 3 * repeats))[0]


@contextlib.contextmanager
def solver_settings(max_sweeps: int, extrapolate: bool = True) -> Iterator[None]:
    """Run the engine with another sweep cap / extrapolation switch, then restore."""
    saved = (_single.MAX_SWEEPS, _single.EXTRAPOLATE)
    _single.MAX_SWEEPS, _single.EXTRAPOLATE = max_sweeps, extrapolate
    try:
        yield
    finally:
        _single.MAX_SWEEPS, _single.EXTRAPOLATE = saved


def per_iteration_time(
    X: np.ndarray, rank: int, n_iter: int, repeats: int, plain: bool = False
) -> float:
    """Median seconds per iteration, initialisation excluded.

    ``plain``: one HALS sweep per factor and no extrapolation, i.e. the cost of
    a textbook HALS iteration in this implementation.
    """
    settings = solver_settings(1, False) if plain else contextlib.nullcontext()
    with settings:
        return statistics.median(_per_iteration_run(X, rank, n_iter) for _ in range(repeats))


def sweep_tradeoff(
    X: np.ndarray, rank: int, sk_time: float, sk_err: float, prod: float
) -> list[dict[str, Any]]:
    """Per-iteration cost and time to scikit-learn's error for several sweep caps."""
    rows = []
    for cap in (1, 2, 3, 4, _single.MAX_SWEEPS):
        with solver_settings(cap):
            start = time.perf_counter()
            res = factorize(X, rank, max_iter=MLNMF_MAX_ITER, tol=0, target_error=sk_err)
            seconds = time.perf_counter() - start
            per_iter = per_iteration_time(X, rank, 20, 1)
        rows.append(
            {
                "max_sweeps": cap,
                "per_iter_ratio": per_iter / prod,
                "ratio": seconds / sk_time,
                "n_iter": res.n_iter,
                "reached": bool(res.history[-1] <= sk_err * (1 + 1e-9)),
            }
        )
        print(
            f"    sweeps <= {cap:2d}: per-iter {per_iter / prod:4.2f} x products, "
            f"time to sklearn's error {seconds / sk_time:5.2f} ({res.n_iter} it)",
            flush=True,
        )
    return rows


def _per_iteration_run(X: np.ndarray, rank: int, n_iter: int) -> float:
    stamps: list[float] = []
    factorize(
        X, rank, max_iter=n_iter, tol=0, callback=lambda s, i, e: stamps.append(time.perf_counter())
    )
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def bench_single(name: str, X64: np.ndarray, rank: int, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for dtype in (np.float32, np.float64):
        X = X64.astype(dtype)
        sk_time, (Wsk, Hsk) = timed(lambda X=X: run_sklearn(X, rank), repeats)
        sk_err = rel_err(X, Wsk, Hsk)
        ml_time, res = timed(
            lambda X=X, e=sk_err: factorize(
                X, rank, max_iter=MLNMF_MAX_ITER, tol=0, target_error=e
            ),
            repeats,
        )
        ml_err = rel_err(X, res.W, res.H)
        reached = bool(ml_err <= sk_err * (1 + 1e-9))
        prod = products_time(X, rank, repeats)
        n_probe = 20 if X.size > 2_000_000 else 40
        per_iter = per_iteration_time(X, rank, n_probe, repeats)
        plain_iter = per_iteration_time(X, rank, n_probe, repeats, plain=True)
        ratio = ml_time / sk_time
        rows.append(
            {
                "matrix": name,
                "shape": list(X.shape),
                "rank": rank,
                "dtype": np.dtype(dtype).name,
                "sklearn_seconds": sk_time,
                "sklearn_error": sk_err,
                "mlnmf_seconds": ml_time,
                "mlnmf_error": ml_err,
                "mlnmf_n_iter": res.n_iter,
                "reached": reached,
                "ratio": ratio,
                "ratio_ok": reached and ratio <= RATIO_TARGET,
                "products_seconds": prod,
                "per_iter_seconds": per_iter,
                "per_iter_ratio": per_iter / prod,
                "per_iter_ok": per_iter / prod <= PER_ITER_TARGET,
                "plain_hals_iter_seconds": plain_iter,
                "plain_hals_iter_ratio": plain_iter / prod,
                "sweeps_per_factor": [
                    _single._n_sweeps(X.shape[0], X.shape[1], rank, _single.ALPHA),
                    _single._n_sweeps(X.shape[1], X.shape[0], rank, _single.ALPHA),
                ],
            }
        )
        print(
            f"{name:20s} {rows[-1]['dtype']:8s} r={rank:<4d} sklearn {sk_time:7.3f}s "
            f"err {sk_err:.5f} | mlnmf {ml_time:7.3f}s err {ml_err:.5f} in {res.n_iter:4d} it "
            f"{'' if reached else '(NOT REACHED) '}| ratio {ratio:5.2f} | "
            f"per-iter {per_iter * 1e3:7.2f} ms = {per_iter / prod:4.2f} x products "
            f"({prod * 1e3:.2f} ms); plain HALS iteration {plain_iter / prod:4.2f} x",
            flush=True,
        )
        if "2048" in name and dtype is np.float32:
            rows[-1]["sweep_tradeoff"] = sweep_tradeoff(X, rank, sk_time, sk_err, prod)
    return rows


def bench_deep(name: str, X: np.ndarray, repeats: int) -> dict[str, Any]:
    ranks = [64, 32, 16]
    deep_time, deep = timed(lambda: factorize_deep(X, ranks), repeats)
    single_time, single = timed(lambda: factorize(X, ranks[-1]), repeats)
    floors = [svd_floor(X, r) for r in ranks]
    row = {
        "image": name,
        "shape": list(X.shape),
        "ranks": ranks,
        "greedy_errors": deep.greedy_errors,
        "fine_tuned_errors": deep.depth_errors,
        "layer_errors": deep.layer_errors,
        "svd_floors": floors,
        "single_rank16_nmf_error": float(single.history[-1]),
        "fine_tuned_over_single": deep.depth_errors[-1] / float(single.history[-1]),
        "greedy_seconds": deep.seconds["greedy"],
        "fine_tune_seconds": deep.seconds["fine_tune"],
        "fine_tune_n_iter": deep.fine_tune_n_iter,
        "total_seconds": deep_time,
        "single_rank16_seconds": single_time,
    }
    print(f"\n{name} {X.shape[0]}x{X.shape[1]}, ranks {ranks}")
    print(f"  {'depth':>5s} {'rank':>5s} {'greedy':>8s} {'fine-tuned':>10s} {'SVD floor':>9s}")
    for d, r in enumerate(ranks):
        print(
            f"  {d + 1:5d} {r:5d} {deep.greedy_errors[d]:8.4f} {deep.depth_errors[d]:10.4f} "
            f"{floors[d]:9.4f}"
        )
    print(
        f"  single-layer rank-16 NMF {single.history[-1]:.4f} ({single_time:.2f}s); "
        f"fine-tuned / single = {row['fine_tuned_over_single']:.3f}; "
        f"greedy {row['greedy_seconds']:.2f}s, fine-tune {row['fine_tune_seconds']:.2f}s "
        f"({deep.fine_tune_n_iter} rounds)",
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 2048x2048 matrix, 1 repeat")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per timing (median)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS threads for both libraries (default 1: two threads collapse when another "
        "process shares the 2 cores; 0 = library default)",
    )
    parser.add_argument("--only", default=None, help="run only matrices whose name contains this")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    warnings.filterwarnings("ignore", message=".*Maximum number of iterations.*")
    limiter = None
    if args.threads:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(args.threads)
    single: list[dict[str, Any]] = []
    print(f"mlnmf engine vs scikit-learn NMF(cd), repeats={repeats}, threads={args.threads}")
    for name, (loader, rank) in MATRICES.items():
        if args.quick and "2048" in name:
            continue
        if args.only and args.only not in name:
            continue
        single.extend(bench_single(name, loader(), rank, repeats if "2048" not in name else 1))
    deep = []
    if not args.only:
        deep.append(bench_deep("grey", load_grey(), repeats))
        deep.append(bench_deep("colour", load_colour(), repeats))
    summary = {
        "worst_ratio": max((r["ratio"] for r in single), default=None),
        "all_reached": all(r["reached"] for r in single),
        "all_ratio_ok": all(r["ratio_ok"] for r in single),
        "worst_plain_hals_iter_ratio_2048": max(
            (r["plain_hals_iter_ratio"] for r in single if "2048" in r["matrix"]), default=None
        ),
        "worst_per_iter_ratio_2048": max(
            (r["per_iter_ratio"] for r in single if "2048" in r["matrix"]), default=None
        ),
        "sweep_tradeoff_2048_float32": next(
            (r["sweep_tradeoff"] for r in single if "sweep_tradeoff" in r), None
        ),
    }
    if deep:
        grey = deep[0]
        summary.update(
            grey_greedy_depth3=grey["greedy_errors"][-1],
            grey_greedy_ok=grey["greedy_errors"][-1] <= 0.21,
            grey_fine_tuned_over_single=grey["fine_tuned_over_single"],
            grey_fine_tuned_ok=grey["fine_tuned_over_single"] <= 1.02,
            grey_fine_tune_seconds=grey["fine_tune_seconds"],
            grey_fine_tune_time_ok=grey["fine_tune_seconds"] < 2.0,
        )
    print("\nsummary:", json.dumps(summary, indent=1))
    report = {
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "processor": platform.processor() or platform.machine(),
            "threads": args.threads,
        },
        "targets": {"ratio": RATIO_TARGET, "per_iter_ratio": PER_ITER_TARGET},
        "repeats": repeats,
        "single_layer": single,
        "deep": deep,
        "summary": summary,
    }
    if limiter is not None:
        limiter.unregister()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
