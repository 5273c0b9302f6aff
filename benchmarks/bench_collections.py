"""Benchmark of collections (``mlnmf learn`` / ``encode``) against scikit-learn's NMF.

Run from the repository root::

    .venv/bin/python benchmarks/bench_collections.py [--seeds N] [--threads N]

Side by side in one process (timings are wall seconds of single runs; BLAS
threads limited to ``--threads``):

* swimmer (256 images 32 x 32, generated): rank-17 learn with the defaults vs
  scikit-learn NMF(init="nndsvda", solver="cd"); for each seed the worst of the
  16 limb positions' best cosine with an atom (recovered: >= 0.9); mlnmf with
  decompose's ``init="nndsvda"`` too (learn's default is ``nndsvd``); and, as a
  diagnostic, plain HALS updating W before H (scikit-learn's order) from our start.
* faces (scikit-image ``lfw_subset``, 200 images 25 x 25, 150 to learn and 50
  held out, split by a fixed permutation): depth-3 ``learn --ranks 40,20,10``
  vs scikit-learn's rank-10 NMF on the same matrix (target: error <= 1.02x),
  then the held-out faces encoded with each dictionary fixed (ours: NNLS at
  depth 3; scikit-learn: ``transform``; target <= 1.05x).
* digits (scikit-learn's 1,797 images 8 x 8): k-means (k = 10) on raw pixels,
  on one-layer codes (rank 10) and on deep codes (ranks 40,20,10), greedy and
  fine-tuned, NMF and Semi-NMF: NMI and accuracy (best one-to-one matching of
  clusters to digits), and how alike codes of one digit are compared with
  codes of different digits (mean cosine within / between classes).

Everything goes to benchmarks/results/collections.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from environment import environment  # noqa: E402

from mlnmf_cli.collections import LEARN_DEFAULTS, encode, learn  # noqa: E402
from mlnmf_cli.collections.swimmer import recovered_parts, swimmer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "collections.json"
FACES_RANKS = (40, 20, 10)
DIGITS_RANKS = (40, 20, 10)


def timed(fn: Callable[[], Any], repeats: int = 1) -> tuple[float, Any]:
    """The best of ``repeats`` timings (for calls of a few milliseconds) and the last result."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def rel(X: np.ndarray, R: np.ndarray) -> float:
    return float(np.linalg.norm(X - R) / np.linalg.norm(X))


def sklearn_nmf(rank: int, seed: int = 0, max_iter: int = 1000) -> Any:
    from sklearn.decomposition import NMF

    return NMF(rank, init="nndsvda", solver="cd", max_iter=max_iter, random_state=seed)


# --------------------------------------------------------------------------- swimmer


def hals_w_first(X: np.ndarray, rank: int, seed: int, sweeps: int = 300) -> np.ndarray:
    """Plain alternating HALS (one sweep per factor, W then H, no extrapolation) from
    mlnmf's NNDSVDa start: a diagnostic of what the start alone allows."""
    from mlnmf_cli.collections.nnls import nnls
    from mlnmf_cli.engine._init import initialize

    W, H = initialize(X, rank, "nndsvda", np.random.default_rng(seed), "hals", "nmf")
    for _ in range(sweeps):
        W = nnls(H.T, X.T, max_iter=1, H0=W.T).H.T
        H = nnls(W, X, max_iter=1, H0=H).H
    return W


def bench_swimmer(seeds: int) -> dict[str, Any]:
    images, _ = swimmer()
    X = images.reshape(len(images), -1).T
    rows = []
    for seed in range(seeds):
        for dtype in ("float32", "float64"):
            t_ours, ours = timed(lambda s=seed, d=dtype: learn(X, (17,), seed=s, dtype=d))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = sklearn_nmf(17, seed)
                t_sk, W = timed(lambda m=model, d=dtype: m.fit_transform(X.astype(d)))
            rows.append(
                {
                    "seed": seed,
                    "dtype": dtype,
                    "mlnmf_worst_cosine": round(float(recovered_parts(ours.features(1)).min()), 4),
                    "mlnmf_error": ours.depth_errors()[0]["relative_error"],
                    "mlnmf_seconds": round(t_ours, 3),
                    "sklearn_worst_cosine": round(float(recovered_parts(W).min()), 4),
                    "sklearn_error": rel(X, W @ model.components_),
                    "sklearn_seconds": round(t_sk, 3),
                    "mlnmf_nndsvda_worst_cosine": round(
                        float(
                            recovered_parts(
                                learn(X, (17,), seed=seed, dtype=dtype, init="nndsvda").features(1)
                            ).min()
                        ),
                        4,
                    ),
                    "hals_w_first_worst_cosine": round(
                        float(recovered_parts(hals_w_first(X.astype(dtype), 17, seed)).min()), 4
                    ),
                }
            )
    dtype = LEARN_DEFAULTS.get("dtype", "float32")
    default = next(r for r in rows if r["seed"] == 0 and r["dtype"] == dtype)
    return {
        "defaults_dtype": dtype,
        "defaults_recover_all": default["mlnmf_worst_cosine"] >= 0.9,
        "defaults_worst_cosine": default["mlnmf_worst_cosine"],
        "mlnmf_recovered_runs": sum(r["mlnmf_worst_cosine"] >= 0.9 for r in rows),
        "sklearn_recovered_runs": sum(r["sklearn_worst_cosine"] >= 0.9 for r in rows),
        "mlnmf_nndsvda_recovered_runs": sum(r["mlnmf_nndsvda_worst_cosine"] >= 0.9 for r in rows),
        "hals_w_first_recovered_runs": sum(r["hals_w_first_worst_cosine"] >= 0.9 for r in rows),
        "runs": len(rows),
        "rows": rows,
    }


# --------------------------------------------------------------------------- faces


def bench_faces() -> dict[str, Any]:
    from skimage import data

    faces = np.asarray(data.lfw_subset(), dtype=np.float64)
    X = faces.reshape(len(faces), -1).T
    order = np.random.default_rng(0).permutation(X.shape[1])
    train, test = X[:, order[:150]], X[:, order[150:]]
    t_learn, learned = timed(lambda: learn(train, FACES_RANKS))
    ours_train = learned.depth_errors()[-1]["relative_error"]
    t_enc, enc = timed(lambda: encode(learned.Ws, test), repeats=7)
    ours_test = rel(test, enc.reconstruction)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = sklearn_nmf(FACES_RANKS[-1])
        t_sk, codes = timed(lambda: model.fit_transform(train.T))
        t_sk_tr, test_codes = timed(lambda: model.transform(test.T), repeats=7)
    sk_train = rel(train.T, codes @ model.components_)
    sk_test = rel(test.T, test_codes @ model.components_)
    # Our dictionary at depth 1 and a single-layer learn of rank 10, for context.
    single = learn(train, (FACES_RANKS[-1],))
    return {
        "matrix": f"{train.shape[0]}x{train.shape[1]} (train), {test.shape[1]} held out",
        "ranks": list(FACES_RANKS),
        "learn": {
            "mlnmf_deep_error": ours_train,
            "sklearn_rank10_error": sk_train,
            "ratio": ours_train / sk_train,
            "target": 1.02,
            "mlnmf_single_rank10_error": single.depth_errors()[0]["relative_error"],
            "mlnmf_depth_errors": [r["relative_error"] for r in learned.depth_errors()],
            "svd_floor_rank10": learned.depth_errors()[-1]["svd_floor"],
            "mlnmf_seconds": round(t_learn, 3),
            "sklearn_seconds": round(t_sk, 3),
        },
        "encode": {
            "mlnmf_error": ours_test,
            "sklearn_transform_error": sk_test,
            "ratio": ours_test / sk_test,
            "target": 1.05,
            "mlnmf_seconds": round(t_enc, 4),
            "sklearn_seconds": round(t_sk_tr, 4),
        },
    }


# --------------------------------------------------------------------------- digits


def accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    from scipy.optimize import linear_sum_assignment

    k = int(max(labels.max(), clusters.max())) + 1
    table = np.zeros((k, k))
    np.add.at(table, (clusters, labels), 1)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(labels))


def code_similarity(codes: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean cosine between codes of the same digit and of different digits (rows = images)."""
    norms = np.linalg.norm(codes, axis=1, keepdims=True)
    unit = codes / np.where(norms > 0, norms, 1.0)
    cos = unit @ unit.T
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(labels), dtype=bool)
    return {
        "within": float(cos[same & off].mean()),
        "between": float(cos[~same].mean()),
    }


def cluster(codes: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    found = KMeans(10, n_init=10, random_state=0).fit_predict(codes)
    return {
        "nmi": float(normalized_mutual_info_score(labels, found)),
        "accuracy": accuracy(labels, found),
        **{f"cosine_{k}": v for k, v in code_similarity(codes, labels).items()},
    }


def bench_digits() -> list[dict[str, Any]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = digits.data.T / 16.0  # 64 pixels x 1797 images
    y = digits.target
    rows = [{"representation": "raw pixels", "dims": 64, **cluster(X.T, y)}]
    for method in ("nmf", "semi"):
        for ranks in ((DIGITS_RANKS[-1],), DIGITS_RANKS):
            for fine_tune in (False, True):
                if len(ranks) == 1 and fine_tune:
                    continue  # one layer: fine-tuning is the same problem
                t, learned = timed(
                    lambda r=ranks, m=method, f=fine_tune: learn(X, r, method=m, fine_tune=f)
                )
                codes = np.asarray(learned.Hs[-1], dtype=np.float64).T
                kind = "one layer" if len(ranks) == 1 else ("fine-tuned" if fine_tune else "greedy")
                rows.append(
                    {
                        "representation": f"{method} {kind} ranks {','.join(map(str, ranks))}",
                        "dims": ranks[-1],
                        "relative_error": learned.depth_errors()[-1]["relative_error"],
                        "seconds": round(t, 3),
                        **cluster(codes, y),
                    }
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="swimmer seeds per dtype")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(args.threads):
        report: dict[str, Any] = {
            "benchmark": "collections",
            "environment": environment(),
            "threads": args.threads,
            "seeds": args.seeds,
        }
        print("swimmer ...", flush=True)
        report["swimmer"] = bench_swimmer(args.seeds)
        print(json.dumps({k: v for k, v in report["swimmer"].items() if k != "rows"}, indent=1))
        print("faces ...", flush=True)
        report["faces"] = bench_faces()
        print(json.dumps(report["faces"], indent=1))
        print("digits ...", flush=True)
        report["digits"] = bench_digits()
        for row in report["digits"]:
            print(
                f"  {row['representation']:<36} NMI {row['nmi']:.3f}  acc {row['accuracy']:.3f}  "
                f"cos within {row['cosine_within']:.3f} between {row['cosine_between']:.3f}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
