"""Benchmark of the mlnmf engine against scikit-learn's NMF (solver "cd"), issues 15 and 16.

Run from the repository root::

    .venv/bin/python benchmarks/bench_engine.py [--quick] [--repeats N] [--threads N]

Everything runs in one process, side by side with scikit-learn, one BLAS
thread each (two collapse when another process shares a 2-core machine),
NNDSVDa starts, timings as medians over interleaved repeats (scikit-learn,
mlnmf, scikit-learn, ...), so that the ratios survive a loaded machine:

* ``single_layer``: on photos of 0.1-1 Mpx (rank 64) and on small matrices
  (a 64x64 thumbnail at rank 16, faces 625x100 and digits 64x1797 at rank 10),
  the time mlnmf needs (from X, initialisation included) to reach the relative
  error scikit-learn's NMF(cd, tol=0) reaches in 200 iterations, over
  scikit-learn's time for those 200 iterations, as medians over ``--seeds``
  seeds a side (the basin reached depends on the seed: see bench_single);
  the time of one mlnmf iteration
  over the time of the two products X H^T and W^T X; and its share of Python
  overhead, the time of an iteration at rank 1 over the time at the rank.
* ``encode``: the coefficients of 1,000 new 25x25 images with a fixed rank-20
  dictionary (engine ``encode``) against scikit-learn's ``NMF.transform``.
* ``deep``: the whole multilayer model (ranks 64, 32, 16: greedy + fine-tune)
  against one scikit-learn rank-64 fit of 200 iterations; the error at every
  depth against a full greedy run (max_iter 200, tol 1e-5, no fine-tuning)
  and the deepest against a long scikit-learn rank-16 fit; dead components.
* ``frontier``: the fine-tuning's trade-off between the deepest error and the
  shallower ones over the weight of the deepest depth (``deep_weight``; inf =
  the deepest product alone), NMF and Semi-NMF, both dtypes.

Each row carries its target and whether it is met. Results go to
benchmarks/results/engine.json (``--quick``: fewer images, one repeat).
Needs scikit-learn, scikit-image, Pillow, threadpoolctl.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from environment import environment  # noqa: E402

from mlnmf_cli.engine import _deep, _single, factorize, factorize_deep  # noqa: E402
from mlnmf_cli.engine._init import initialize  # noqa: E402
from mlnmf_cli.engine._linalg import factor_relative_error  # noqa: E402
from mlnmf_cli.engine.metrics import svd_floor  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "engine.json"
SKLEARN_ITER = 200
MLNMF_MAX_ITER = 3000
DEEP_RANKS = [64, 32, 16]
TARGETS = {
    "ratio_photo": 0.25,  # time to scikit-learn's 200-iteration error, 0.1-1 Mpx photos
    "ratio_small": 0.5,  # the same on small matrices (issue 16)
    "per_iter_512": 3.0,  # one iteration at 512x512 over the two products
    "encode": 2.0,  # encode over scikit-learn's NMF.transform
    "deep_time": 1.5,  # whole deep model over one scikit-learn rank-64 200-iteration fit
    "deep_vs_single": 1.01,  # deepest error over a long scikit-learn rank-16 fit
    "depth_vs_greedy": 1.05,  # every depth's error over its full greedy error
}
# The names benchmarks/tables.py read before this schema (same meaning).
TARGETS_COMPAT = {"ratio": TARGETS["ratio_photo"], "per_iter_ratio": TARGETS["per_iter_512"]}
# (middle_weight, deep_weight) pairs; (1, 4) shows the equal-middle variant.
FRONTIER_WEIGHTS = [
    (0.25, 1.0),
    (0.25, 2.0),
    (0.25, 4.0),
    (0.25, 8.0),
    (0.25, 16.0),
    (1.0, 4.0),
    (0.25, float("inf")),
]


# ------------------------------------------------------------------ data


def _grey(path_or_array: Any) -> np.ndarray:
    if isinstance(path_or_array, np.ndarray):
        img = Image.fromarray(path_or_array)
    else:
        img = Image.open(path_or_array)
    return np.asarray(img.convert("L"), dtype=np.float64) / 255


def _sample(name: str) -> Callable[[], np.ndarray]:
    return lambda: _grey(ROOT / "sample_images" / f"{name}.png")


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return _grey(np.asarray(getattr(data, name)()))

    return load


def load_motorcycle() -> np.ndarray:
    from skimage import data

    return _grey(np.asarray(data.stereo_motorcycle()[0]))


def load_colour() -> np.ndarray:
    rgb = np.asarray(Image.open(ROOT / "sample_images" / "astronaut.png").convert("RGB"))
    rgb = rgb.astype(np.float64) / 255
    return np.concatenate([rgb[:, :, 0], rgb[:, :, 1], rgb[:, :, 2]], axis=1)


def load_thumbnail() -> np.ndarray:
    img = Image.open(ROOT / "sample_images" / "camera.png").convert("L")
    return np.asarray(img.resize((64, 64), Image.Resampling.BOX), dtype=np.float64) / 255


def load_faces(count: int = 100) -> np.ndarray:
    from skimage import data

    faces = np.asarray(data.lfw_subset(), dtype=np.float64)
    return faces.reshape(faces.shape[0], -1).T[:, :count].copy()


def load_digits() -> np.ndarray:
    from sklearn.datasets import load_digits as digits

    return digits().data.T.astype(np.float64) / 16


# name -> (loader, rank, kind, tuned on). "Tuned on": looked at while choosing the engine's
# constants (the last: Ang & Gillis's starting extrapolation weight, chosen over seeds 0-4
# on every matrix above moon). The four below it were added after that choice and never
# looked at before it: they are the held-out check.
MATRICES: dict[str, tuple[Callable[[], np.ndarray], int, str, bool]] = {
    "camera 512x512": (_sample("camera"), 64, "photo", True),
    "astronaut grey 512x512": (_sample("astronaut"), 64, "photo", True),
    "coffee grey 400x600": (_sample("coffee"), 64, "photo", True),
    "astronaut RGB 512x1536": (load_colour, 64, "photo", True),
    "chelsea grey 300x451": (_skimage("chelsea"), 64, "photo", True),
    "rocket grey 427x640": (_skimage("rocket"), 64, "photo", True),
    "brick 512x512": (_skimage("brick"), 64, "photo", True),
    "hubble grey 872x1000": (_skimage("hubble_deep_field"), 64, "photo", True),
    "moon 512x512": (_skimage("moon"), 64, "photo", False),
    "gravel 512x512": (_skimage("gravel"), 64, "photo", False),
    "motorcycle grey 500x741": (load_motorcycle, 64, "photo", False),
    "coins 303x384": (_skimage("coins"), 64, "photo", False),
    "thumbnail 64x64": (load_thumbnail, 16, "small", True),
    "faces 625x100": (load_faces, 10, "small", True),
    "digits 64x1797": (load_digits, 10, "small", True),
}
QUICK = ["camera 512x512", "coffee grey 400x600", "thumbnail 64x64", "faces 625x100"]
DEEP_IMAGES = ["camera", "astronaut", "coffee"]
FRONTIER_IMAGES = ["camera", "astronaut", "coffee", "chelsea"]


def deep_image(name: str) -> np.ndarray:
    if name == "chelsea":
        return _skimage("chelsea")()
    return _sample(name)()


# ------------------------------------------------------------------ helpers


def long_deepest_rank_fit(X: np.ndarray) -> float:
    """The error of a long scikit-learn fit at the deepest rank: what "good" means for
    the deepest depth (the issue's 1.01x target is against it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        W, H, _ = sklearn_fit(X, DEEP_RANKS[-1], max_iter=1000, tol=1e-7)
    return rel_err(X, W, H)


def rel_err(X: np.ndarray, W: np.ndarray, H: np.ndarray) -> float:
    return factor_relative_error(np.asarray(X), np.asarray(W), np.asarray(H))


def clock(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def sklearn_fit(
    X: np.ndarray, rank: int, max_iter: int = SKLEARN_ITER, tol: float = 0.0, seed: int = 0
) -> Any:
    from sklearn.decomposition import NMF

    model = NMF(rank, init="nndsvda", solver="cd", max_iter=max_iter, tol=tol, random_state=seed)
    W = model.fit_transform(X)
    return W, model.components_, model


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
    return statistics.median(clock(both)[0] for _ in range(max(7, 3 * repeats)))


def per_iteration(
    X: np.ndarray, rank: int, n_iter: int, max_sweeps: int = _single.MAX_SWEEPS
) -> float:
    """Seconds per iteration of the solver (initialisation excluded), over exactly
    ``n_iter`` iterations (a negative tolerance never stops it early)."""
    W, H = initialize(X, rank, "nndsvda", np.random.default_rng(0), "hals", "nmf")
    stamps: list[float] = []
    _single.solve(
        X, W, H, method="nmf", solver="hals", max_iter=n_iter, tol=-1.0, target_error=None,
        callback=lambda s, i, e, f: stamps.append(time.perf_counter()), stage="layer1",
        max_sweeps=max_sweeps,
    )  # fmt: skip
    # The median of the single iterations: a time slice lost to another process
    # on a shared machine lands in one iteration, not in the estimate.
    return float(np.median(np.diff(stamps)))


# ------------------------------------------------------------------ single layer


def bench_single(
    name: str, X64: np.ndarray, rank: int, kind: str, tuned: bool, seeds: int
) -> list[dict[str, Any]]:
    """Time to scikit-learn's 200-iteration error, over ``seeds`` seeds a side.

    Both solvers start from NNDSVDa, whose randomized SVD takes the seed, and
    on some images the basin reached depends on it: on the hubble field
    scikit-learn's 200-iteration error spans 0.3568-0.3578 over seeds 0-5 and
    mlnmf's converged error 0.3562-0.3581, so one seed pair is a draw, not a
    measurement. The target is scikit-learn's median error over the seeds; the
    time is the median over mlnmf's seeds to reach it (a run that stops short
    counts as infinitely slow), over scikit-learn's median time. A first pass
    gets scikit-learn's errors; a second interleaves the two by seed, and
    scikit-learn's time is the median over both passes' runs.
    """
    rows = []
    target = TARGETS["ratio_photo"] if kind == "photo" else TARGETS["ratio_small"]
    for dtype in (np.float32, np.float64):
        X = X64.astype(dtype)
        first = [clock(lambda X=X, s=s: sklearn_fit(X, rank, seed=s)) for s in range(seeds)]
        sk_errors = [rel_err(X, W, H) for _, (W, H, _) in first]
        sk_err = statistics.median(sk_errors)
        sk_times = [t for t, _ in first]
        per_seed = []
        for s in range(seeds):
            sk_times.append(clock(lambda X=X, s=s: sklearn_fit(X, rank, seed=s))[0])
            t, res = clock(
                lambda X=X, e=sk_err, s=s: factorize(
                    X, rank, max_iter=MLNMF_MAX_ITER, tol=0, target_error=e, seed=s
                )
            )
            err = rel_err(X, res.W, res.H)
            per_seed.append(
                {
                    "seed": s,
                    "sklearn_error": sk_errors[s],
                    "mlnmf_seconds": t,
                    "mlnmf_error": err,
                    "mlnmf_n_iter": res.n_iter,
                    "reached": bool(err <= sk_err * (1 + 1e-9)),
                }
            )
        sk_time = statistics.median(sk_times)
        ml_time = statistics.median(
            r["mlnmf_seconds"] if r["reached"] else math.inf for r in per_seed
        )
        n_reached = sum(r["reached"] for r in per_seed)
        reached = math.isfinite(ml_time)
        median_run = sorted(per_seed, key=lambda r: r["mlnmf_seconds"])[seeds // 2]
        # Interleaved too: the products, an iteration at the rank, one at rank 1.
        n_probe = 40 if X.size > 100_000 else 100
        probes: list[tuple[float, float, float]] = []
        for _ in range(3):
            probes.append(
                (
                    products_time(X, rank, 1),
                    per_iteration(X, rank, n_probe),
                    per_iteration(X, 1, n_probe),
                )
            )
        prod, it_r, it_1 = (statistics.median(p[i] for p in probes) for i in range(3))
        ratio = (
            ml_time / sk_time if reached else max(r["mlnmf_seconds"] for r in per_seed) / sk_time
        )
        row = {
            "matrix": name,
            "kind": kind,
            "tuned_on": tuned,
            "shape": list(X.shape),
            "megapixels": X.size / 1e6,
            "rank": rank,
            "dtype": np.dtype(dtype).name,
            "seeds": seeds,
            "sklearn_seconds": sk_time,
            "sklearn_seconds_per_iter": sk_time / SKLEARN_ITER,
            "sklearn_error": sk_err,
            "sklearn_error_range": [min(sk_errors), max(sk_errors)],
            "mlnmf_seconds": ml_time if reached else None,
            "mlnmf_error": statistics.median(r["mlnmf_error"] for r in per_seed),
            "mlnmf_n_iter": median_run["mlnmf_n_iter"],
            "reached": reached,
            "reached_seeds": n_reached,
            "per_seed": per_seed,
            "ratio": ratio,
            "ratio_target": target,
            "ratio_met": reached and ratio <= target,
            "products_seconds": prod,
            "per_iter_seconds": it_r,
            "per_iter_ratio": it_r / prod,
            "per_iter_rank1_seconds": it_1,
            "python_overhead_share": it_1 / it_r,
            "sweeps_per_factor": [
                _single.n_sweeps(X.shape[0], X.shape[1], rank),
                _single.n_sweeps(X.shape[1], X.shape[0], rank),
            ],
        }
        if list(X.shape) == [512, 512]:
            row["per_iter_target"] = TARGETS["per_iter_512"]
            row["per_iter_met"] = row["per_iter_ratio"] <= TARGETS["per_iter_512"]
        rows.append(row)
        print(
            f"{name:24s} {row['dtype']:8s} r={rank:<3d} sklearn {sk_time:7.3f}s err {sk_err:.5f} "
            f"[{min(sk_errors):.5f}-{max(sk_errors):.5f}] | mlnmf "
            f"{ml_time:7.3f}s {median_run['mlnmf_n_iter']:4d} it, reached {n_reached}/{seeds} | "
            f"ratio {ratio:5.2f} (<= {target}) | "
            f"iter {it_r * 1e3:6.2f} ms = {row['per_iter_ratio']:4.1f} x products, "
            f"rank-1 iter {it_1 * 1e3:5.2f} ms ({row['python_overhead_share']:.0%})",
            flush=True,
        )
    return rows


def sweep_tradeoff(name: str, X64: np.ndarray, rank: int, repeats: int) -> list[dict[str, Any]]:
    """The cap on inner sweeps: a cheaper iteration (per_iter_ratio) against fewer
    iterations (time to scikit-learn's 200-iteration error), float32 and float64."""
    rows = []
    for dtype in (np.float32, np.float64):
        X = X64.astype(dtype)
        W, H, _ = sklearn_fit(X, rank)
        sk_err = rel_err(X, W, H)
        caps = (1, 2, 3, 4, _single.MAX_SWEEPS, 8)
        times: dict[int, list[float]] = {c: [] for c in caps}
        iters: dict[int, list[float]] = {c: [] for c in caps}
        n_iter: dict[int, int] = {}
        sk_times, prods = [], []
        for _ in range(repeats):
            sk_times.append(clock(lambda X=X: sklearn_fit(X, rank))[0])
            prods.append(products_time(X, rank, 1))
            for c in caps:
                t, res = clock(
                    lambda X=X, c=c, e=sk_err: factorize(
                        X, rank, max_iter=MLNMF_MAX_ITER, tol=0, target_error=e, max_sweeps=c
                    )
                )
                times[c].append(t)
                n_iter[c] = res.n_iter
                iters[c].append(per_iteration(X, rank, 20, max_sweeps=c))
        sk, prod = statistics.median(sk_times), statistics.median(prods)
        for c in caps:
            row = {
                "matrix": name,
                "dtype": np.dtype(dtype).name,
                "rank": rank,
                "max_sweeps": c,
                "ratio": statistics.median(times[c]) / sk,
                "n_iter": n_iter[c],
                "per_iter_ratio": statistics.median(iters[c]) / prod,
            }
            rows.append(row)
            print(
                f"sweeps <= {c}: {name} {row['dtype']} per-iter {row['per_iter_ratio']:4.1f} x "
                f"products, time to sklearn's error {row['ratio']:.2f} ({row['n_iter']} it)",
                flush=True,
            )
    return rows


# ------------------------------------------------------------------ encode


def load_faces_1000() -> np.ndarray:
    """1,000 25x25 faces as columns: the 200 of lfw_subset, mirrored and shifted by a pixel."""
    from skimage import data

    faces = np.asarray(data.lfw_subset(), dtype=np.float64)
    variants = [
        faces,
        faces[:, :, ::-1],
        np.roll(faces, 1, axis=1),
        np.roll(faces, 1, axis=2),
        np.roll(faces[:, :, ::-1], -1, axis=1),
    ]
    stack = np.concatenate(variants)
    return stack.reshape(stack.shape[0], -1).T.copy()


def bench_encode(repeats: int) -> list[dict[str, Any]]:
    from sklearn.decomposition import NMF

    rows = []
    Xall = load_faces_1000()
    for dtype in (np.float32, np.float64):
        train = load_faces(200).astype(dtype)
        X = Xall.astype(dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = NMF(20, init="nndsvda", solver="cd", max_iter=400, random_state=0)
            model.fit(train.T)
        W = np.ascontiguousarray(model.components_.T)
        sk_times, ml_times = [], []
        Hs = Hm = None
        for _ in range(max(3, repeats)):
            t, Hs = clock(lambda X=X, model=model: model.transform(X.T))
            sk_times.append(t)
            t, Hm = clock(lambda X=X, W=W: _single.encode(X, W))
            ml_times.append(t)
        assert Hs is not None and Hm is not None
        sk_err = rel_err(X, W, Hs.T)
        ml_err = rel_err(X, W, Hm)
        ratio = statistics.median(ml_times) / statistics.median(sk_times)
        row = {
            "what": "encode 1000 25x25 images, fixed rank-20 dictionary",
            "dtype": np.dtype(dtype).name,
            "sklearn_seconds": statistics.median(sk_times),
            "mlnmf_seconds": statistics.median(ml_times),
            "sklearn_error": sk_err,
            "mlnmf_error": ml_err,
            "ratio": ratio,
            "target": TARGETS["encode"],
            "met": ratio <= TARGETS["encode"] and ml_err <= sk_err * 1.001,
        }
        rows.append(row)
        print(
            f"encode {row['dtype']}: sklearn transform {row['sklearn_seconds'] * 1e3:.1f} ms "
            f"err {sk_err:.5f} | mlnmf encode {row['mlnmf_seconds'] * 1e3:.1f} ms err {ml_err:.5f} "
            f"| ratio {ratio:.2f} (<= {TARGETS['encode']})",
            flush=True,
        )
    return rows


# ------------------------------------------------------------------ deep


def bench_deep(name: str, X64: np.ndarray, seeds: int) -> list[dict[str, Any]]:
    """The whole deep model against one scikit-learn rank-64 fit, ``seeds`` seeds a side
    (interleaved): medians, and every depth's worst ratio to its greedy error over
    the seeds (the layer-1 basin is a draw of the seed, as in bench_single)."""
    rows = []
    for dtype in (np.float32, np.float64):
        X = X64.astype(dtype)
        single16 = long_deepest_rank_fit(X)
        sk_times, deep_times, runs = [], [], []
        for s in range(seeds):
            sk_times.append(clock(lambda X=X, s=s: sklearn_fit(X, DEEP_RANKS[0], seed=s))[0])
            t, deep = clock(lambda X=X, s=s: factorize_deep(X, DEEP_RANKS, seed=s))
            deep_times.append(t)
            full = factorize_deep(X, DEEP_RANKS, fine_tune=False, seed=s)
            ratios = [e / g for e, g in zip(deep.depth_errors, full.greedy_errors, strict=True)]
            runs.append((deep, full, ratios, _deep.dead_components(deep.Ws, deep.Hs)))
        deepest = [d.depth_errors[-1] / single16 for d, _, _, _ in runs]
        # The run whose deepest error is the median one is the row's example.
        median_seed = int(np.argsort(deepest)[seeds // 2])
        deep, full, ratios, _ = runs[median_seed]
        worst = [max(r[2][k] for r in runs) for k in range(len(DEEP_RANKS))]
        any_dead = [max(r[3][k] for r in runs) for k in range(len(DEEP_RANKS))]
        time_ratio = statistics.median(deep_times) / statistics.median(sk_times)
        deepest_median = statistics.median(deepest)
        row = {
            "image": name,
            "shape": list(X.shape),
            "dtype": np.dtype(dtype).name,
            "ranks": DEEP_RANKS,
            "seeds": seeds,
            "median_seed": median_seed,
            "full_greedy_errors": full.greedy_errors,
            "greedy_errors": deep.greedy_errors,
            "fine_tuned_errors": deep.depth_errors,
            "depth_over_full_greedy": ratios,
            "depth_over_full_greedy_worst": worst,
            "depth_target": TARGETS["depth_vs_greedy"],
            "depth_met": all(r <= TARGETS["depth_vs_greedy"] for r in worst),
            "svd_floors": [svd_floor(X, r) for r in DEEP_RANKS],
            "sklearn_rank16_long_error": single16,
            "deepest_over_sklearn_rank16": deepest_median,
            "deepest_over_sklearn_rank16_range": [min(deepest), max(deepest)],
            "deepest_target": TARGETS["deep_vs_single"],
            "deepest_met": deepest_median <= TARGETS["deep_vs_single"],
            "dead_components": any_dead,
            "no_dead_met": not any(any_dead),
            "greedy_seconds": deep.seconds["greedy"],
            "fine_tune_seconds": deep.seconds["fine_tune"],
            "fine_tune_n_iter": deep.fine_tune_n_iter,
            # The deepest error after 50 / 100 / ... rounds: what fewer rounds would
            # give (each round costs about fine_tune_seconds / fine_tune_n_iter).
            "fine_tune_deepest_by_round": {
                str(k): float(deep.fine_tune_history[k])
                for k in range(0, deep.fine_tune_n_iter + 1, 25)
            },
            "deep_seconds": statistics.median(deep_times),
            "sklearn_rank64_seconds": statistics.median(sk_times),
            "time_ratio": time_ratio,
            "time_target": TARGETS["deep_time"],
            "time_met": time_ratio <= TARGETS["deep_time"],
        }
        rows.append(row)
        print(
            f"deep {name:10s} {row['dtype']:8s} median seed: errors "
            f"{np.round(deep.depth_errors, 4).tolist()} vs full greedy "
            f"{np.round(full.greedy_errors, 4).tolist()}; worst x greedy over seeds "
            f"{np.round(worst, 3).tolist()}, deepest / sklearn rank-16 {deepest_median:.3f} "
            f"[{min(deepest):.3f}-{max(deepest):.3f}], dead {any_dead} | deep "
            f"{row['deep_seconds']:.2f}s / sklearn rank-64 {row['sklearn_rank64_seconds']:.2f}s "
            f"= {time_ratio:.2f} (<= 1.5)",
            flush=True,
        )
    return rows


def frontier(
    images: list[str], weights: list[tuple[float, float]], max_iter: int
) -> list[dict[str, Any]]:
    """Fine-tuning from the default greedy start for each deep_weight: every depth's
    error over a full greedy run's, the deepest over a long scikit-learn rank-16 fit."""
    rows = []
    for name in images:
        X64 = deep_image(name)
        for dtype in (np.float32, np.float64):
            X = X64.astype(dtype)
            single16 = long_deepest_rank_fit(X)
            for method in ("nmf", "semi"):
                full = factorize_deep(X, DEEP_RANKS, method=method, fine_tune=False)
                start = factorize_deep(
                    X, DEEP_RANKS, method=method, fine_tune=False, tol=_deep.GREEDY_TOL
                )
                for mid, w in weights:
                    t, ft = clock(
                        lambda X=X, s=start, w=w, m=method, mid=mid: _deep.fine_tune(
                            X,
                            s.Ws,
                            s.Hs,
                            method=m,
                            max_iter=max_iter,
                            tol=1e-5,
                            target_error=None,
                            callback=None,
                            normalize=True,
                            greedy_errors=s.greedy_errors,
                            deep_weight=w,
                            middle_weight=mid,
                        )
                    )
                    errs = [
                        rel_err(X, _deep.chain(ft.Ws[: d + 1]), ft.Hs[d])
                        for d in range(len(DEEP_RANKS))
                    ]
                    ratios = [e / g for e, g in zip(errs, full.greedy_errors, strict=True)]
                    row = {
                        "image": name,
                        "dtype": np.dtype(dtype).name,
                        "method": method,
                        "deep_weight": "inf" if np.isinf(w) else w,
                        "middle_weight": mid,
                        "errors": errs,
                        "full_greedy_errors": full.greedy_errors,
                        "depth_over_full_greedy": ratios,
                        "worst_shallow_ratio": max(ratios[:-1]),
                        "deepest_over_sklearn_rank16": errs[-1] / single16,
                        "dead_components": _deep.dead_components(ft.Ws, ft.Hs),
                        "rounds": ft.n_iter,
                        "seconds": t,
                    }
                    rows.append(row)
                    print(
                        f"frontier {name:9s} {row['dtype']:7s} {method:4s} w={mid},{row['deep_weight']!s:4s}"
                        f" errors {np.round(errs, 4).tolist()} x greedy "
                        f"{np.round(ratios, 3).tolist()} deepest/sk16 "
                        f"{row['deepest_over_sklearn_rank16']:.3f} dead "
                        f"{row['dead_components']} {ft.n_iter} rounds {t:.1f}s",
                        flush=True,
                    )
    return rows


def frontier_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per weight: the worst ratios over images, methods and dtypes."""
    out = []
    for mid, w in dict.fromkeys((r["middle_weight"], r["deep_weight"]) for r in rows):
        sel = [r for r in rows if (r["middle_weight"], r["deep_weight"]) == (mid, w)]
        out.append(
            {
                "middle_weight": mid,
                "deep_weight": w,
                "worst_shallow_ratio": max(r["worst_shallow_ratio"] for r in sel),
                "median_shallow_ratio": statistics.median(r["worst_shallow_ratio"] for r in sel),
                "worst_deepest_over_sklearn_rank16": max(
                    r["deepest_over_sklearn_rank16"] for r in sel
                ),
                "median_deepest_over_sklearn_rank16": statistics.median(
                    r["deepest_over_sklearn_rank16"] for r in sel
                ),
                "runs_with_dead_components": sum(any(r["dead_components"]) for r in sel),
                "runs": len(sel),
            }
        )
    return out


ROUNDS = [50, 75, 100, 110, 120, 130, 150]


def rounds_frontier(images: list[str], repeats: int) -> list[dict[str, Any]]:
    """Fine-tuning rounds (``fine_tune_iter``): every depth's error after each
    count in :data:`ROUNDS` (the iterates of one run, exact residuals) and the
    deep model's time at that count (greedy + rounds x the measured time per
    round, interleaved with scikit-learn's rank-64 fit) over scikit-learn's."""
    rows = []
    for name in images:
        X64 = deep_image(name)
        for dtype in (np.float32, np.float64):
            X = X64.astype(dtype)
            single16 = long_deepest_rank_fit(X)
            sk_times, greedy_s, round_s = [], [], []
            for _ in range(repeats):
                sk_times.append(clock(lambda X=X: sklearn_fit(X, DEEP_RANKS[0]))[0])
                deep = factorize_deep(X, DEEP_RANKS, fine_tune_iter=max(ROUNDS))
                greedy_s.append(deep.seconds["greedy"])
                round_s.append(deep.seconds["fine_tune"] / max(1, deep.fine_tune_n_iter))
            sk = statistics.median(sk_times)
            for method in ("nmf", "semi"):
                full = factorize_deep(X, DEEP_RANKS, method=method, fine_tune=False)
                seen: dict[int, list[float]] = {}

                def probe(
                    stage: str, it: int, err: float, factors: Any, seen: Any = seen, X: Any = X
                ) -> None:
                    if stage == "fine-tune" and it in ROUNDS:
                        model = factors()
                        seen[it] = [
                            rel_err(X, _deep.chain(model.Ws[: d + 1]), model.Hs[d])
                            for d in range(len(DEEP_RANKS))
                        ]

                factorize_deep(
                    X, DEEP_RANKS, method=method, fine_tune_iter=max(ROUNDS), callback=probe,
                )  # fmt: skip
                for k, errs in sorted(seen.items()):
                    ratios = [e / g for e, g in zip(errs, full.greedy_errors, strict=True)]
                    t = statistics.median(greedy_s) + k * statistics.median(round_s)
                    row = {
                        "image": name,
                        "dtype": np.dtype(dtype).name,
                        "method": method,
                        "rounds": k,
                        "errors": errs,
                        "depth_over_full_greedy": ratios,
                        "worst_depth_ratio": max(ratios),
                        "deepest_over_sklearn_rank16": errs[-1] / single16,
                        "time_ratio": t / sk if method == "nmf" else None,
                    }
                    rows.append(row)
                    tr = "" if row["time_ratio"] is None else f" time {row['time_ratio']:.2f}"
                    print(
                        f"rounds {name:9s} {row['dtype']:7s} {method:4s} {k:3d}: x greedy "
                        f"{np.round(ratios, 3).tolist()} deepest/sk16 "
                        f"{row['deepest_over_sklearn_rank16']:.4f}{tr}",
                        flush=True,
                    )
    return rows


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI size: 4 matrices, 1 repeat")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median)")
    parser.add_argument(
        "--seeds", type=int, default=5, help="seeds a side for the time to error (median)"
    )
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (0 = default)")
    parser.add_argument("--only", default=None, help="matrices whose name contains this")
    parser.add_argument(
        "--parts",
        default="single,sweeps,encode,deep,frontier",
        help="comma-separated subset of single,sweeps,encode,deep,frontier,rounds",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    seeds = 1 if args.quick else args.seeds
    parts = set(args.parts.split(","))
    warnings.filterwarnings("ignore", message=".*Maximum number of iterations.*")
    limiter = None
    if args.threads:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(args.threads)
    env = environment()
    # The names benchmarks/tables.py reads (environment.py spells them "cores", "scikit-learn").
    env.setdefault("cpus", env.get("cores"))
    env.setdefault("scikit_learn", env.get("scikit-learn"))
    report: dict[str, Any] = {
        "environment": env,
        "threads": args.threads,
        "repeats": repeats,
        "seeds": seeds,
        "quick": args.quick,
        "targets": {**TARGETS, **TARGETS_COMPAT},
        "defaults": {
            "max_sweeps": _single.MAX_SWEEPS,
            "deep_weight": _deep.DEEP_WEIGHT,
            "middle_weight": _deep.MIDDLE_WEIGHT,
            "greedy_tol": _deep.GREEDY_TOL,
        },
    }
    print(
        f"mlnmf engine vs scikit-learn NMF(cd), repeats={repeats}, seeds={seeds}, "
        f"threads={args.threads}"
    )
    print(f"load average {report['environment'].get('load_average')}", flush=True)
    if "single" in parts:
        single: list[dict[str, Any]] = []
        for name, (loader, rank, kind, tuned) in MATRICES.items():
            if (args.quick and name not in QUICK) or (args.only and args.only not in name):
                continue
            single.extend(bench_single(name, loader(), rank, kind, tuned, seeds))
        report["single_layer"] = single
    if "sweeps" in parts and not args.quick:
        name = "camera 512x512"
        report["sweep_tradeoff"] = sweep_tradeoff(name, MATRICES[name][0](), 64, repeats)
    if "encode" in parts:
        report["encode"] = bench_encode(repeats)
    if "deep" in parts:
        images = DEEP_IMAGES[:1] if args.quick else DEEP_IMAGES
        report["deep"] = [row for n in images for row in bench_deep(n, deep_image(n), seeds)]
    if "frontier" in parts:
        images = FRONTIER_IMAGES[:1] if args.quick else FRONTIER_IMAGES
        default = (_deep.MIDDLE_WEIGHT, _deep.DEEP_WEIGHT)
        quick = [(_deep.MIDDLE_WEIGHT, 1.0), default, (_deep.MIDDLE_WEIGHT, float("inf"))]
        weights = quick if args.quick else FRONTIER_WEIGHTS
        rows = frontier(images, weights, max_iter=150)
        report["frontier"] = {"rows": rows, "by_weight": frontier_summary(rows)}
        for s in report["frontier"]["by_weight"]:
            print("frontier", json.dumps(s), flush=True)
    if "rounds" in parts:
        images = FRONTIER_IMAGES[:1] if args.quick else FRONTIER_IMAGES
        report["rounds"] = rounds_frontier(images, repeats)
    report["summary"] = summarise(report)
    print("\nsummary:", json.dumps(report["summary"], indent=1))
    report["environment"]["load_average_end"] = list(os.getloadavg())
    if limiter is not None:
        limiter.unregister()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.exists() and parts != {"single", "sweeps", "encode", "deep", "frontier"}:
        # A partial run updates its parts of an existing report.
        old = json.loads(args.out.read_text())
        envs = old.pop("environments", None) or {"earlier parts": old.get("environment")}
        # Each part's environment once: the parts measured now leave the older entries.
        envs = {
            ",".join(kept): env
            for key, env in envs.items()
            if (kept := [p for p in key.split(",") if p not in parts]) or key == "earlier parts"
        }
        envs[",".join(sorted(parts))] = report["environment"]
        old.update({k: v for k, v in report.items() if k != "summary"})
        old["environments"] = envs
        old["summary"] = summarise(old)
        report = old
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    s: dict[str, Any] = {}
    single = report.get("single_layer", [])
    photos = [r for r in single if r["kind"] == "photo"]
    small = [r for r in single if r["kind"] == "small"]
    if single:
        s["worst_ratio"] = max(r["ratio"] for r in single)
        s["all_reached"] = all(r["reached"] for r in single)
    if photos:
        s["photo_worst_ratio"] = max(r["ratio"] for r in photos)
        s["photo_rows_met"] = f"{sum(r['ratio_met'] for r in photos)}/{len(photos)}"
        s["photo_images_met_both_dtypes"] = sorted(
            {r["matrix"] for r in photos} - {r["matrix"] for r in photos if not r["ratio_met"]}
        )
    if small:
        s["small_ratios"] = {f"{r['matrix']} {r['dtype']}": r["ratio"] for r in small}
        s["small_met"] = all(r["ratio_met"] for r in small)
    per_iter = [r for r in single if "per_iter_met" in r]
    if per_iter:
        s["per_iter_512"] = {f"{r['matrix']} {r['dtype']}": r["per_iter_ratio"] for r in per_iter}
        s["per_iter_512_met"] = all(r["per_iter_met"] for r in per_iter)
    if report.get("encode"):
        s["encode_ratios"] = {r["dtype"]: r["ratio"] for r in report["encode"]}
        s["encode_met"] = all(r["met"] for r in report["encode"])
    if report.get("deep"):
        deep = report["deep"]
        s["deep_time_ratios"] = {f"{r['image']} {r['dtype']}": r["time_ratio"] for r in deep}
        s["deep_time_met"] = all(r["time_met"] for r in deep)
        s["depth_vs_greedy_met"] = all(r["depth_met"] for r in deep)
        s["deepest_vs_sklearn16_met"] = all(r["deepest_met"] for r in deep)
        s["no_dead_met"] = all(r["no_dead_met"] for r in deep)
    if report.get("frontier"):
        s["frontier_by_weight"] = report["frontier"]["by_weight"]
    return s


if __name__ == "__main__":
    raise SystemExit(main())
