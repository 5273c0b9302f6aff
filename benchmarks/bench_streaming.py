"""Benchmark of collections at scale: ``learn --memory`` (streamed blocks) and ``--scheduler`` (Dask).

Run from the repository root (about 5 minutes on a shared 2-core machine)::

    .venv/bin/python benchmarks/bench_streaming.py [--sizes 3000,12000,50000] [--memory 32]

Measured, one BLAS thread:

* peak memory: ``/usr/bin/time -v`` (maximum resident set size) of a subprocess
  ``mlnmf learn DIR --ranks 16,8 --memory MB`` on generated collections of 32 x 32
  PNG images (smooth blobs mixed at random), the same budget for every size, against
  a stated baseline: the peak of ``mlnmf learn`` on 16 images (every import, font
  and buffer of a run, no data to speak of); the peak of a bare import of what
  ``learn`` imports plus one small product is recorded too.
  Targets: largest / smallest peak <= 1.25 and every peak <= baseline + budget.
  Few iterations (``--max-iter 10 --fine-tune-iter 5 --tol 0``): every size does the
  same work per image, so wall time per image should not grow (linear total).
* blocked vs in-memory, in one process on the smallest collection (it fits), best of
  ``--repeats`` interleaved runs: the
  engine's ``factorize_deep`` on the whole matrix (what ``learn`` does without a
  budget) against the blocked solver with the budget's blocks, and with one block;
  the same iteration counts (30 + 10 fine-tuning, ``tol=0``). Target: blocked <= 1.3x.
* Dask: a two-worker ``LocalCluster`` (processes, one thread each) against the local
  blocked run on the middle collection, same blocks: factors equal to 1e-4
  (relative, Frobenius), times side by side.
* a paper scaling table for 1,000,000 images from the measured per-block costs.

Results go to benchmarks/results/streaming.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from environment import environment  # noqa: E402

from mlnmf_cli.collections import blocks, streaming  # noqa: E402

RANKS = (16, 8)
SIDE = 32
ITERS = {"max_iter": 10, "fine_tune_iter": 5, "tol": 0.0}
COMPARE_ITERS = {"max_iter": 30, "fine_tune_iter": 10, "tol": 0.0}
MLNMF = [str(ROOT / ".venv" / "bin" / "mlnmf")]


def make_collection(folder: Path, n: int, seed: int = 0) -> Path:
    """n grey 32 x 32 PNGs, each a random non-negative mix of 10 smooth blobs plus noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    centres = rng.uniform(0, SIDE, (10, 2))
    parts = np.stack(
        [np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * (SIDE / 6) ** 2)) for y, x in centres]
    )
    for i in range(n):
        img = np.tensordot(rng.random(10) ** 2, parts, axes=1)
        img = 0.9 * img / img.max() + 0.05 * rng.random((SIDE, SIDE))
        Image.fromarray(np.rint(255 * img).astype(np.uint8), "L").save(folder / f"i{i:06d}.png")
    return folder


def timed_run(args: list[str]) -> dict[str, Any]:
    """Wall seconds and peak RSS (MB) of a subprocess under /usr/bin/time -v."""
    start = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-v", *args], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-800:]}")
    return {"seconds": round(wall, 3), "peak_mb": round(int(match.group(1)) / 1024, 1)}


def baseline() -> dict[str, Any]:
    code = (
        "import numpy as np, PIL.Image\n"
        "import mlnmf_cli.cli, mlnmf_cli.cli.learn, mlnmf_cli.collections.streaming\n"
        "import mlnmf_cli.collections.outputs\n"
        "a = np.ones((512, 512), np.float32); b = a @ a\n"
        "c = np.ones((256, 256)) @ np.ones((256, 256))\n"
    )
    return timed_run([sys.executable, "-c", code])


def tiny_learn(work: Path) -> dict[str, Any]:
    """Peak of ``mlnmf learn`` on 16 images (in memory, a few KB of data): every import,
    font and buffer a run uses, with no data to speak of."""
    folder = make_collection(work / "tiny", 16, seed=1)
    out = work / "tiny-model"
    args = [*MLNMF, "learn", str(folder), "--ranks", ",".join(map(str, RANKS)),
            "--out", str(out), "--quiet", "--force"]  # fmt: skip
    run = timed_run(args)
    shutil.rmtree(out)
    return run


def peak_memory(data: Path, sizes: list[int], memory: int, work: Path) -> dict[str, Any]:
    rows = []
    imports = baseline()
    base = tiny_learn(work)
    for n in sizes:
        out = work / f"model{n}"
        args = [
            *MLNMF, "learn", str(data / f"c{n}"), "--ranks", ",".join(map(str, RANKS)),
            "--memory", str(memory), "--max-iter", str(ITERS["max_iter"]),
            "--fine-tune-iter", str(ITERS["fine_tune_iter"]), "--tol", "0",
            "--out", str(out), "--quiet", "--force",
        ]  # fmt: skip
        run = timed_run(args)
        report = json.loads((out / "report.json").read_text())
        rows.append(
            {
                "images": n,
                **run,
                "per_1000_images_s": round(1000 * run["seconds"] / n, 3),
                "report_seconds": report["seconds"],
                "blocks": report.get("streaming", {}).get("blocks", 1),
                "block_columns": report.get("streaming", {}).get("block_columns", n),
                "passes": report.get("streaming", {}).get("passes"),
                "relative_error": round(report["relative_error"], 5),
                "within_budget": run["peak_mb"] <= base["peak_mb"] + memory,
            }
        )
        print(f"  {n:>6} images: peak {run['peak_mb']} MB, {run['seconds']} s", flush=True)
        shutil.rmtree(out)
    peaks = [r["peak_mb"] for r in rows]
    per_image = [r["per_1000_images_s"] for r in rows]
    ns = np.array([r["images"] for r in rows], dtype=float)
    ts = np.array([r["seconds"] for r in rows])
    slope, intercept = np.polyfit(ns, ts, 1)
    fit = intercept + slope * ns
    return {
        "memory_mb": memory,
        "ranks": list(RANKS),
        "iterations": ITERS,
        "baseline": {**base, "what": "mlnmf learn on 16 images of 32 x 32 (in memory)"},
        "imports_only": {**imports, "what": "python importing what learn imports, one product"},
        "runs": rows,
        "peak_ratio_largest_smallest": round(peaks[-1] / peaks[0], 3),
        "peak_target": 1.25,
        "all_within_baseline_plus_budget": all(r["within_budget"] for r in rows),
        "seconds_per_image_ratio_largest_smallest": round(per_image[-1] / per_image[0], 3),
        "linear_fit": {
            "seconds_per_1000_images": round(1000 * slope, 4),
            "fixed_seconds": round(intercept, 3),
            "worst_relative_residual": round(float(np.max(np.abs(ts - fit) / ts)), 3),
        },
    }


def cached(data: Path, n: int, work: Path) -> tuple[blocks.BlockFile, Path]:
    folder = Path(tempfile.mkdtemp(dir=work))
    col = streaming.decode_to_cache(
        [data / f"c{n}"], folder, dtype=np.float32, channels=None, size=None, patches=None,
        recursive=False, max_pixels=None, exclude=None, chunk_bytes=8 << 20,
    )  # fmt: skip
    return col.X, folder  # type: ignore[return-value]


def run_blocked(X: blocks.BlockFile, folder: Path, step: int, ex: Any = None) -> dict[str, Any]:
    ex = ex if ex is not None else blocks.LocalBlocks(folder, X, step)
    start = time.perf_counter()
    res = blocks.learn_blocked(ex, X.rows, X.cols, RANKS, dtype=np.float32, **COMPARE_ITERS)
    seconds = time.perf_counter() - start
    Hs = [ex.file(name).read(0, X.cols) for name in res.H_names]
    error = float(res.fine_tune_errors[-1])
    return {"seconds": seconds, "Ws": res.Ws, "Hs": Hs, "error": error, "passes": ex.passes}


def blocked_vs_memory(
    data: Path, n: int, memory: int, work: Path, repeats: int = 3
) -> dict[str, Any]:
    from mlnmf_cli import engine

    X, folder = cached(data, n, work)
    plan = blocks.plan_blocks(X.rows, n, RANKS, 4, memory * blocks.MB)
    Xm = X.read(0, n)
    reps: dict[str, list[float]] = {"engine": [], "blocked": [], "one_block": []}
    errors: dict[str, float] = {}
    for _ in range(repeats):  # interleaved, best of the repeats: a shared machine's noise
        start = time.perf_counter()
        ref = engine.factorize_deep(Xm, RANKS, **COMPARE_ITERS)
        reps["engine"].append(time.perf_counter() - start)
        errors["engine"] = float(ref.depth_errors[-1])
        for key, step in (("blocked", plan.block), ("one_block", n)):
            sub = Path(tempfile.mkdtemp(dir=work))
            got = run_blocked(X, sub, step)
            reps[key].append(got["seconds"])
            errors[key] = got["error"]
            shutil.rmtree(sub)
    best = {k: min(v) for k, v in reps.items()}
    # With the defaults (tol 1e-5, up to 200 + 150 iterations): time and error to stop.
    start = time.perf_counter()
    ref = engine.factorize_deep(Xm, RANKS)
    defaults = {"engine": {"seconds": time.perf_counter() - start, "error": ref.depth_errors[-1],
                           "iterations": [lr.n_iter for lr in ref.layers] + [ref.fine_tune_n_iter]}}  # fmt: skip
    sub = Path(tempfile.mkdtemp(dir=work))
    ex = blocks.LocalBlocks(sub, X, plan.block)
    start = time.perf_counter()
    res = blocks.learn_blocked(ex, X.rows, n, RANKS, dtype=np.float32)
    defaults["blocked"] = {
        "seconds": time.perf_counter() - start,
        "error": float(res.fine_tune_errors[-1]),
        "iterations": [lr.n_iter for lr in res.layers] + [res.fine_tune_n_iter],
    }
    shutil.rmtree(sub)
    X.close()
    shutil.rmtree(folder)
    return {
        "images": n,
        "iterations": COMPARE_ITERS,
        "block_columns": plan.block,
        "blocks": -(-n // plan.block),
        "repeats": repeats,
        "seconds_best": {k: round(v, 3) for k, v in best.items()},
        "blocked_over_engine": round(best["blocked"] / best["engine"], 3),
        "blocked_over_one_block": round(best["blocked"] / best["one_block"], 3),
        "target": 1.3,
        "final_relative_error": {k: round(v, 5) for k, v in errors.items()},
        "with_defaults": {
            k: {
                "seconds": round(v["seconds"], 3),
                "relative_error": round(v["error"], 5),
                "iterations": v["iterations"],
            }
            for k, v in defaults.items()
        },
    }


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def dask_vs_local(data: Path, n: int, memory: int, work: Path) -> dict[str, Any]:
    from distributed import Client, LocalCluster

    from mlnmf_cli.collections import distributed

    X, folder = cached(data, n, work)
    step = blocks.plan_blocks(X.rows, n, RANKS, 4, memory * blocks.MB).block
    sub = Path(tempfile.mkdtemp(dir=work))
    local = run_blocked(X, sub, step)
    shutil.rmtree(sub)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc,
        Client(lc) as client,
    ):  # fmt: skip
        ex = distributed.DaskBlocks(lc.scheduler_address, X, step, client=client)
        remote = run_blocked(X, folder, step, ex)
        ex.close()
    factors = {
        **{f"W{i + 1}": rel(a, b) for i, (a, b) in enumerate(zip(remote["Ws"], local["Ws"], strict=True))},
        **{f"H{i + 1}": rel(a, b) for i, (a, b) in enumerate(zip(remote["Hs"], local["Hs"], strict=True))},
    }  # fmt: skip
    X.close()
    shutil.rmtree(folder)
    passes = local["passes"]
    return {
        "images": n,
        "workers": 2,
        "block_columns": step,
        "blocks": -(-n // step),
        "iterations": COMPARE_ITERS,
        "passes": passes,
        "seconds": {"local": round(local["seconds"], 3), "dask": round(remote["seconds"], 3)},
        "dask_over_local": round(remote["seconds"] / local["seconds"], 3),
        "overhead_per_pass_s": round((remote["seconds"] - local["seconds"]) / passes, 4),
        "relative_difference": {k: float(f"{v:.3g}") for k, v in factors.items()},
        "max_relative_difference": float(f"{max(factors.values()):.3g}"),
        "target": 1e-4,
    }


def scaling_table(
    compare: dict[str, Any], dask: dict[str, Any], budget_mb: int = 1024
) -> dict[str, Any]:
    """1M images of 32 x 32 (float32), ranks 16,8, on paper from the measured costs.

    Blocks sized by a ``budget_mb`` budget (at least one block per worker). Per
    iteration, each block's partial sums travel once up the tree and W^T with its
    Gram matrix goes to each block's task. Per worker: its columns of X and four
    copies of its columns of the H's (H, its extrapolation, the best so far, and the
    pass's new state) plus one block's working memory.
    """
    n, m = 1_000_000, SIDE * SIDE
    r1 = RANKS[0]
    plan = blocks.plan_blocks(m, n, RANKS, 4, budget_mb * blocks.MB)
    passes = dask["passes"]
    per_column_pass = compare["seconds_best"]["blocked"] / (passes * compare["images"])
    overhead = max(0.0, dask["overhead_per_pass_s"])
    # One block's sums of an extrapolated HALS step: [H; Hy] X^T, H H^T, Hy Hy^T, 2 inner products.
    partial = (2 * r1 * m + 2 * r1 * r1 + 2) * 8
    args = (r1 * m + r1 * r1) * 8  # W^T and its Gram, with each block's task
    rows = []
    for workers in (1, 2, 8, 32, 128):
        nblocks = max(workers, -(-n // plan.block))
        share = n / workers
        rows.append(
            {
                "workers": workers,
                "blocks": nblocks,
                "bytes_per_iteration": nblocks * (partial + args),
                "per_worker_memory_mb": round(
                    share * (m + 4 * sum(RANKS)) * 4 / blocks.MB + budget_mb, 1
                ),
                "seconds_per_iteration": round(share * per_column_pass + overhead, 3),
            }
        )
    return {
        "images": n,
        "pixels": m,
        "ranks": list(RANKS),
        "budget_mb": budget_mb,
        "block_columns": plan.block,
        "measured_seconds_per_column_per_pass": per_column_pass,
        "measured_dask_overhead_per_pass_s": overhead,
        "one_block_partial_sums_bytes": partial,
        "streamed_single_machine": {
            "memory_mb": budget_mb,
            "cache_gb": round(n * m * 4 / 1e9, 2),
            "seconds_per_iteration": round(n * per_column_pass, 2),
        },
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3000,12000,50000")
    parser.add_argument("--memory", type=int, default=32, help="the --memory budget (MB)")
    parser.add_argument("--data", type=Path, default=None, help="keep the collections here")
    parser.add_argument(
        "--repeats", type=int, default=3, help="interleaved repeats of blocked vs in-memory"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="mlnmf-bench-stream-"))
    data = args.data or work / "data"
    try:
        for n in sizes:
            if not (data / f"c{n}").is_dir() or len(os.listdir(data / f"c{n}")) != n:
                print(f"generating {n} images", flush=True)
                make_collection(data / f"c{n}", n, seed=n)
        print("peak memory", flush=True)
        peaks = peak_memory(data, sizes, args.memory, work)
        print("blocked vs in-memory", flush=True)
        compare = blocked_vs_memory(data, sizes[0], args.memory, work, args.repeats)
        print(compare, flush=True)
        print("dask vs local", flush=True)
        dask = dask_vs_local(data, sizes[min(1, len(sizes) - 1)], args.memory, work)
        print(dask, flush=True)
        results = {
            "benchmark": "streaming",
            "environment": environment(),
            "peak_memory": peaks,
            "blocked_vs_in_memory": compare,
            "dask_vs_local": dask,
            "scaling_1m": scaling_table(compare, dask),
            "total_seconds": round(time.perf_counter() - t0, 1),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = ROOT / "benchmarks" / "results" / "streaming.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "environment"}, indent=2))


if __name__ == "__main__":
    main()
