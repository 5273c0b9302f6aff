"""Benchmark of batches: worker processes, a Dask cluster, peak memory; plus the test tallies.

Run from the repository root::

    .venv/bin/python benchmarks/bench_batch.py [--repeats N] [--quick] [--no-dask]
        [--no-memory] [--fuzz-examples N]

* ``throughput``: 48 grey images of 256x256 at ranks 32,16 through the real
  command line (``mlnmf decompose FOLDER -q``, a fresh process each time, so
  start-up, worker spawning and writing every picture are included), with
  ``--jobs 1`` and ``--jobs 2``; target: jobs 2 >= 1.7x the images per second of
  jobs 1. Then the same folder with ``--scheduler`` on a two-worker
  ``LocalCluster`` (loopback, processes, one thread each; the cluster is
  started before the clock runs); target: within 25% of jobs 2. Every run's
  model.npz arrays are compared with the jobs 1 run.
* ``memory``: one 4096x4096 grey image at ranks 64,32,16 in float32, measured
  with ``/usr/bin/time -v`` (maximum resident set size); target: below the
  interpreter's baseline (Python with mlnmf, NumPy and Pillow imported) plus 6
  times the image's float32 matrix (6 x 64 MiB).
* ``tests``: the catalogue (tests/test_catalogue.py) and the fuzz run
  (tests/test_fuzz.py, ``HYPOTHESIS_PROFILE=fuzz``) with hypothesis
  statistics: passing and failing examples.

Timings are medians over repeats; the load average is recorded before each
run, because the machine is shared. Everything goes to
benchmarks/results/batch.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from environment import environment  # noqa: E402

from mlnmf_cli import __version__, storage  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "batch.json"
MLNMF = [sys.executable, "-m", "mlnmf_cli"]
JOBS_TARGET = 1.7
DASK_TARGET = 0.75  # at least 75% of the throughput of --jobs 2
MEMORY_FACTOR = 6


def load() -> float:
    return os.getloadavg()[0]


def make_images(folder: Path, n: int, size: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        f1, f2 = rng.uniform(2, 9, 2)
        pattern = (
            0.5 + 0.25 * np.sin(xx / f1 + i) * np.cos(yy / f2) + 0.15 * rng.random((size, size))
        )
        pixels = np.clip(np.rint(pattern * 255), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:03d}.png")


def factors(out: Path) -> dict[str, list[np.ndarray]]:
    result = {}
    for model in sorted(out.glob("*/model.npz")):
        saved = storage.load_model(model)
        result[model.parent.name] = [a for Ws, Hs in saved.parts for a in (*Ws, *Hs)]
    return result


def same(a: dict[str, list[np.ndarray]], b: dict[str, list[np.ndarray]]) -> bool:
    return a.keys() == b.keys() and all(
        len(a[k]) == len(b[k])
        and all(np.array_equal(x, y) for x, y in zip(a[k], b[k], strict=True))
        for k in a
    )


def timed_batch(images: Path, out: Path, ranks: str, extra: list[str]) -> dict[str, Any]:
    if out.exists():
        shutil.rmtree(out)
    before = load()
    start = time.perf_counter()
    proc = subprocess.run(
        [*MLNMF, "decompose", str(images), "--ranks", ranks, "-o", str(out), "-q", *extra],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"batch failed ({proc.returncode}): {proc.stderr}")
    return {"seconds": round(seconds, 3), "load_before": round(before, 2)}


def throughput(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    images = work / "images"
    make_images(images, args.images, args.size)
    runs: dict[str, list[dict[str, Any]]] = {"jobs1": [], "jobs2": [], "dask": []}
    reference: dict[str, list[np.ndarray]] | None = None
    identical = {"jobs2": True, "dask": True}

    cluster = None
    if not args.no_dask:
        from distributed import LocalCluster

        cluster = LocalCluster(
            host="127.0.0.1",
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            worker_dashboard_address=None,
        )
    try:
        for r in range(args.repeats):
            for name, extra in (
                ("jobs1", ["--jobs", "1"]),
                ("jobs2", ["--jobs", "2"]),
                *(
                    [("dask", ["--scheduler", cluster.scheduler_address])]
                    if cluster is not None
                    else []
                ),
            ):
                out = work / f"out-{name}"
                run = timed_batch(images, out, args.ranks, extra)
                runs[name].append(run)
                got = factors(out)
                if name == "jobs1" and reference is None:
                    reference = got
                elif name != "jobs1":
                    identical[name] &= reference is not None and same(reference, got)
                print(
                    f"  repeat {r + 1} {name}: {run['seconds']:.2f} s (load {run['load_before']})"
                )
    finally:
        if cluster is not None:
            cluster.close()

    def summary(name: str) -> dict[str, Any]:
        seconds = [r["seconds"] for r in runs[name]]
        median = statistics.median(seconds)
        return {
            "runs": runs[name],
            "median_seconds": round(median, 3),
            "images_per_second": round(args.images / median, 3),
        }

    result: dict[str, Any] = {
        "images": args.images,
        "size": [args.size, args.size],
        "ranks": args.ranks,
        "jobs1": summary("jobs1"),
        "jobs2": summary("jobs2"),
    }
    speedup = result["jobs2"]["images_per_second"] / result["jobs1"]["images_per_second"]
    result["jobs2_speedup"] = round(speedup, 3)
    result["jobs2_target"] = JOBS_TARGET
    result["jobs2_meets_target"] = speedup >= JOBS_TARGET
    result["jobs2_identical_to_jobs1"] = identical["jobs2"]
    if runs["dask"]:
        result["dask"] = summary("dask")
        ratio = result["dask"]["images_per_second"] / result["jobs2"]["images_per_second"]
        result["dask_vs_jobs2"] = round(ratio, 3)
        result["dask_target"] = f">= {DASK_TARGET} of jobs 2 (within 25%)"
        result["dask_meets_target"] = ratio >= DASK_TARGET
        result["dask_identical_to_jobs1"] = identical["dask"]
    return result


def max_rss_kib(cmd: list[str]) -> tuple[int, float, str]:
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))  # type: ignore[union-attr]
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", proc.stderr)
    parts = [float(p) for p in wall.group(1).split(":")] if wall else [0.0]
    seconds = sum(p * 60**i for i, p in enumerate(reversed(parts)))
    return rss, seconds, proc.stderr


def memory(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    size = args.memory_size
    image = work / "big.png"
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:size, 0:size]
    pattern = 0.5 + 0.3 * np.sin(xx / 37.0) * np.cos(yy / 23.0) + 0.1 * rng.random((size, size))
    Image.fromarray(np.clip(np.rint(pattern * 255), 0, 255).astype(np.uint8)).save(image)
    del pattern, xx, yy
    baseline, _, _ = max_rss_kib(
        [sys.executable, "-c", "import mlnmf_cli.cli, mlnmf_cli.pipeline, numpy, PIL.Image"]
    )
    cmd = [
        *MLNMF, "decompose", str(image), "--ranks", "64,32,16", "--dtype", "float32",
        "-o", str(work / "out-memory"), "-q",
        "--max-iter", str(args.memory_max_iter), "--fine-tune-iter", str(args.memory_fine_tune_iter),
    ]  # fmt: skip
    peak, seconds, _ = max_rss_kib(cmd)
    matrix_mib = size * size * 4 / 2**20
    limit_kib = baseline + MEMORY_FACTOR * size * size * 4 / 1024
    return {
        "image": [size, size],
        "ranks": "64,32,16",
        "dtype": "float32",
        "max_iter": args.memory_max_iter,
        "fine_tune_iter": args.memory_fine_tune_iter,
        "command": " ".join(cmd[2:]),
        "float32_matrix_mib": round(matrix_mib, 1),
        "baseline_mib": round(baseline / 1024, 1),
        "peak_mib": round(peak / 1024, 1),
        "limit_mib": round(limit_kib / 1024, 1),
        "peak_above_baseline_in_matrices": round((peak - baseline) / 1024 / matrix_mib, 2),
        "meets_target": peak < limit_kib,
        "seconds": round(seconds, 1),
    }


def tests(args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "HYPOTHESIS_PROFILE": "fuzz", "FUZZ_EXAMPLES": str(args.fuzz_examples)}
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "tests/test_catalogue.py", "tests/test_fuzz.py", "--hypothesis-show-statistics",
        ],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    text = proc.stdout
    passing = sum(int(m) for m in re.findall(r"(\d+) passing", text))
    failing = sum(int(m) for m in re.findall(r"(\d+) failing", text))
    invalid = sum(int(m) for m in re.findall(r"(\d+) invalid", text))
    tally = re.search(r"(\d+) passed(?:, (\d+) failed)?", text)
    failed = re.search(r"(\d+) failed", text)
    return {
        "fuzz_examples_per_test": args.fuzz_examples,
        "pytest_passed": int(tally.group(1)) if tally else 0,
        "pytest_failed": int(failed.group(1)) if failed else 0,
        "fuzz_passing_examples": passing,
        "fuzz_failing_examples": failing,
        "fuzz_invalid_examples": invalid,
        "exit_code": proc.returncode,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--ranks", default="32,16")
    parser.add_argument("--quick", action="store_true", help="12 images, 1 repeat, 1024 px memory")
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-size", type=int, default=4096)
    parser.add_argument("--memory-max-iter", type=int, default=30)
    parser.add_argument("--memory-fine-tune-iter", type=int, default=10)
    parser.add_argument("--fuzz-examples", type=int, default=0, help="0: skip the test tallies")
    args = parser.parse_args()
    if args.quick:
        args.images, args.repeats, args.memory_size = 12, 1, 1024

    result: dict[str, Any] = {
        "version": __version__,
        "environment": environment(),
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cores": len(os.sched_getaffinity(0)),
            "load_at_start": [round(x, 2) for x in os.getloadavg()],
        },
    }
    with tempfile.TemporaryDirectory(prefix="mlnmf-bench-") as tmp:
        work = Path(tmp)
        print(f"throughput: {args.images} images {args.size}x{args.size}, ranks {args.ranks}")
        result["throughput"] = throughput(args, work)
        t = result["throughput"]
        print(
            f"  jobs 1 {t['jobs1']['images_per_second']} img/s, jobs 2 "
            f"{t['jobs2']['images_per_second']} img/s: x{t['jobs2_speedup']} "
            f"(target {JOBS_TARGET}), identical {t['jobs2_identical_to_jobs1']}"
        )
        if "dask" in t:
            print(
                f"  dask {t['dask']['images_per_second']} img/s = {t['dask_vs_jobs2']} of jobs 2, "
                f"identical {t['dask_identical_to_jobs1']}"
            )
        if not args.no_memory:
            print(f"memory: {args.memory_size}x{args.memory_size} at 64,32,16, float32")
            m = result["memory"] = memory(args, work)
            print(
                f"  peak {m['peak_mib']} MiB, baseline {m['baseline_mib']} MiB, limit "
                f"{m['limit_mib']} MiB ({m['peak_above_baseline_in_matrices']} matrices): "
                f"{'met' if m['meets_target'] else 'MISSED'}"
            )
    if args.fuzz_examples:
        print(f"tests: catalogue and fuzz at {args.fuzz_examples} examples per test")
        result["tests"] = tests(args)
        print(f"  {result['tests']}")
    result["machine"]["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
