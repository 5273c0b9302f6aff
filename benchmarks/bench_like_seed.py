"""Spread of the 2017 write-up's greedy Semi-NMF pipeline against ``--like-seed`` (issue 17).

Run from the repository root (needs SciPy, installed with the dev extras)::

    .venv/bin/python benchmarks/bench_like_seed.py [--runs 15]

The write-up stacks Gillis-Kumar starts (its ``appr_seminmf``): each layer takes
the rank-(r-1) truncated SVD of its input from SciPy's ``svds`` (ARPACK, random
start vector), flips each right singular vector to make its minimum largest,
and builds W = [A, -sum of A's columns] (r = 2: [A, -A]) and H = [B; 0] shifted
column-wise to be >= 0. :func:`writeup_layer` is an independent implementation
of that recipe around ``svds``. From the second layer on the input has tied
singular values (exactly 1), so the subspace ``svds`` returns depends on its
random start: the write-up's own runs spread. This script measures that spread
over ``--runs`` start seeds and our ``factorize_deep`` with the like-seed
options over seeds 0..runs-1, on

* the grey camera sample at full size with ranks 64,32,16 (the issue's case);
* the three samples resized to 256x256, each colour channel on its own, with
  ranks 100,80 (``compare --like-seed``, as ``make experiments`` runs it).

Errors are ||X - W1 ... Wd Hd|| / ||X|| at each depth (over the three channels
together for colour images). Last, a diagnosis on one channel: for a few
layer-1 runs of the write-up (the same subspace, different rounding), the
spread of depth-2 errors over layer-2 starts alone, and ours on the same input.
Results go to benchmarks/results/like_seed.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy
from scipy.sparse.linalg import ArpackError, svds

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from environment import environment  # noqa: E402

from mlnmf_cli import imageio  # noqa: E402
from mlnmf_cli.engine import factorize_deep  # noqa: E402
from mlnmf_cli.engine._linalg import residual_squared_norm, squared_norm  # noqa: E402
from mlnmf_cli.experiments import (  # noqa: E402
    LIKE_SEED,
    LIKE_SEED_IMAGE_RANKS,
    resize_image,
)

SAMPLES = ROOT / "sample_images"
OUT = ROOT / "benchmarks" / "results" / "like_seed.json"
ENGINE_OPTIONS = {k: v for k, v in LIKE_SEED.items() if k != "channels"}


def writeup_layer(M: np.ndarray, r: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """One layer of the write-up's pipeline: Gillis-Kumar's start from ``svds``."""
    U, s, Vt = svds(M, k=r - 1, rng=rng)
    A = U * s
    B = Vt.copy()
    for i in range(r - 1):
        if B[i].min() < (-B[i]).min():
            B[i] = -B[i]
            A[:, i] = -A[:, i]
    last = -A if r == 2 else -A.sum(axis=1, keepdims=True)
    W = np.hstack([A, last])
    H = np.vstack([B, np.zeros((1, M.shape[1]))])
    H -= np.minimum(0.0, B.min(axis=0))
    return W, H


ARPACK_FAILURES = [0]


def writeup_depth_residuals(X: np.ndarray, ranks: tuple[int, ...], seed: int) -> list[float]:
    """||X - W1 ... Wd Hd||^2 at each depth for the write-up's stacked pipeline.

    On tied singular values ARPACK sometimes stops with error 3 ("no shifts could
    be applied"): the write-up's code would crash there. Such a layer is counted
    in ``ARPACK_FAILURES`` and retried with the next random start.
    """
    rng = np.random.default_rng(seed)
    out = []
    current, features = X, np.eye(X.shape[0])
    for r in ranks:
        for _ in range(50):
            try:
                W, H = writeup_layer(current, r, rng)
                break
            except ArpackError:
                ARPACK_FAILURES[0] += 1
        else:
            raise RuntimeError(f"ARPACK failed 50 times at rank {r}")
        features = features @ W
        out.append(residual_squared_norm(X, features, H))
        current = H
    return out


def ours_depth_residuals(X: np.ndarray, ranks: tuple[int, ...], seed: int) -> list[float]:
    res = factorize_deep(X, ranks, seed=seed, **ENGINE_OPTIONS)
    return [
        residual_squared_norm(X, res.effective_features(d), res.Hs[d - 1])
        for d in range(1, len(ranks) + 1)
    ]


def relative(residuals: list[list[float]], norm2: float) -> list[float]:
    """Depth errors of one image from its matrices' residuals (summed over channels)."""
    return [float(np.sqrt(sum(col) / norm2)) for col in zip(*residuals, strict=True)]


def summary(values: list[float]) -> dict[str, float]:
    a = np.asarray(values)
    return {
        "min": float(a.min()),
        "median": float(np.median(a)),
        "max": float(a.max()),
        "mean": float(a.mean()),
    }


def measure(name: str, mats: list[np.ndarray], ranks: tuple[int, ...], runs: int) -> dict[str, Any]:
    norm2 = sum(squared_norm(M) for M in mats)
    start = time.perf_counter()
    writeup = [
        relative([writeup_depth_residuals(M, ranks, 1000 + run) for M in mats], norm2)
        for run in range(runs)
    ]
    t_writeup = time.perf_counter() - start
    failures, ARPACK_FAILURES[0] = ARPACK_FAILURES[0], 0
    start = time.perf_counter()
    ours = [
        relative([ours_depth_residuals(M, ranks, seed) for M in mats], norm2)
        for seed in range(runs)
    ]
    t_ours = time.perf_counter() - start
    depths = []
    for d in range(len(ranks)):
        w = [e[d] for e in writeup]
        o = [e[d] for e in ours]
        lo, hi = min(w), max(w)
        depths.append(
            {
                "depth": d + 1,
                "rank": ranks[d],
                "writeup": summary(w),
                "ours": summary(o),
                "ours_inside_writeup_range": sum(lo - 1e-9 <= x <= hi + 1e-9 for x in o),
                "writeup_runs": w,
                "ours_runs": o,
            }
        )
    return {
        "case": name,
        "shape": list(mats[0].shape),
        "matrices": len(mats),
        "ranks": list(ranks),
        "runs": runs,
        "writeup_arpack_failures_retried": failures,
        "seconds": {"writeup": t_writeup, "ours": t_ours},
        "depths": depths,
    }


def start_versus_input(
    X: np.ndarray, ranks: tuple[int, int], layer1_seeds: range, starts: int
) -> list[dict[str, Any]]:
    """What decides the write-up's depth-2 subspace: its layer-2 start, or its layer-1
    output? For each layer-1 run (same subspace, different rounding), the depth-2
    error over ``starts`` layer-2 starts; and our layer 2 (the seed's tie-break)
    on that same input over as many seeds."""
    r1, r2 = ranks
    norm = float(np.sqrt(squared_norm(X)))
    out = []
    for seed in layer1_seeds:
        W1, H1 = writeup_layer(X, r1, np.random.default_rng(seed))
        arpack, ours = [], []
        for t in range(starts):
            try:
                W2, H2 = writeup_layer(H1, r2, np.random.default_rng(500 + t))
            except ArpackError:
                continue
            arpack.append(float(np.sqrt(residual_squared_norm(X, W1 @ W2, H2)) / norm))
            res = factorize_deep(H1, (r2,), seed=t, **ENGINE_OPTIONS)
            ours.append(float(np.sqrt(residual_squared_norm(X, W1 @ res.Ws[0], res.H)) / norm))
        out.append({"layer1_seed": seed, "writeup": summary(arpack), "ours": summary(ours)})
    return out


def cases() -> list[tuple[str, list[np.ndarray], tuple[int, ...]]]:
    camera = imageio.load_image(SAMPLES / "camera.png")
    out = [("camera 512x512 grey", imageio.to_matrices(camera.pixels, "gray"), (64, 32, 16))]
    for stem in ("camera", "astronaut", "coffee"):
        image = resize_image(imageio.load_image(SAMPLES / f"{stem}.png"), (256, 256))
        mats = imageio.to_matrices(image.pixels, LIKE_SEED["channels"])
        out.append((f"{stem} 256x256 {LIKE_SEED['channels']}", mats, LIKE_SEED_IMAGE_RANKS))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    results = []
    print(
        "| case | depth | rank | write-up min / median / max | ours min / median / max | ours inside |"
    )
    print("| --- | ---: | ---: | --- | --- | ---: |")
    for name, mats, ranks in cases():
        res = measure(name, mats, ranks, args.runs)
        results.append(res)
        for d in res["depths"]:
            w, o = d["writeup"], d["ours"]
            print(
                f"| {name} | {d['depth']} | {d['rank']} "
                f"| {w['min']:.4f} / {w['median']:.4f} / {w['max']:.4f} "
                f"| {o['min']:.4f} / {o['median']:.4f} / {o['max']:.4f} "
                f"| {d['ours_inside_writeup_range']}/{args.runs} |",
                flush=True,
            )
        print(
            f"  ({name}: ARPACK error 3 in {res['writeup_arpack_failures_retried']} write-up layers, retried)"
        )
    name, mats, ranks = cases()[3]
    diagnosis = start_versus_input(mats[0], ranks, range(1000, 1005), 8)
    print(f"\n{name}, red channel, depth 2, for one layer-1 output at a time (8 layer-2 starts):")
    print("| layer-1 run | write-up min / median / max | ours min / median / max |")
    print("| ---: | --- | --- |")
    for row in diagnosis:
        w, o = row["writeup"], row["ours"]
        print(
            f"| {row['layer1_seed']} | {w['min']:.4f} / {w['median']:.4f} / {w['max']:.4f} "
            f"| {o['min']:.4f} / {o['median']:.4f} / {o['max']:.4f} |"
        )
    payload = {
        "environment": {**environment(), "scipy": scipy.__version__},
        "writeup_seeds": f"svds rng = default_rng(1000 + run), run 0..{args.runs - 1}",
        "our_seeds": f"factorize_deep seed 0..{args.runs - 1}",
        "options": ENGINE_OPTIONS,
        "cases": results,
        "start_versus_input": {"case": f"{name}, red channel, depth 2", "runs": diagnosis},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
