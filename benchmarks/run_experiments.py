"""`make experiments`: the seed's equivariance experiments, measured with the real commands.

Runs ``mlnmf compare`` on the bundled samples and ``mlnmf random-test`` on random
pixels, each with our default pipeline and with ``--like-seed``, then prints the
Markdown tables quoted in docs/experiments.md (also written to
``<out>/experiments.md``). Every number comes from the commands' ``--json`` output.

    python benchmarks/run_experiments.py [--out benchmarks/results/experiments] [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlnmf_cli.experiments import interval_text as interval  # noqa: E402

SAMPLES = ROOT / "sample_images"


def mlnmf(*args: str | Path) -> tuple[dict[str, Any], float]:
    cmd = [sys.executable, "-m", "mlnmf_cli", *map(str, args), "--json", "--quiet", "--force"]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}")
    return json.loads(done.stdout), seconds


def f3(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def compare_rows(setup: str, data: dict[str, Any]) -> list[str]:
    rows = []
    for e in data["similarities"]:
        self_ = e["self"]["mean"] if e["self"] else None
        rows.append(
            f"| {setup} | {e['config']} | {e['depth']} | {e['rank']} | {e['kind']} "
            f"| {f3(e['across']['mean'])} | {f3(e['null']['mean'])} "
            f"[{e['null']['low']:.3f}, {e['null']['high']:.3f}] | {f3(self_)} "
            f"| {'trivial' if e['trivial'] else f3(e['corrected'])} |"
        )
    return rows


def random_rows(setup: str, data: dict[str, Any]) -> list[str]:
    k = data["repeats"]
    rows = []
    for r in data["summary"]:
        rows.append(
            f"| {setup} | {r['config']} | {r['depth']} | {r['rank']} | {r['kind']} "
            f"| {interval(r['across'], k)} | {interval(r['null'], k)} | {interval(r['self'], k)} "
            f"| {'trivial' if r['trivial'] else interval(r['corrected'], k)} "
            f"| {interval(r['control'], k)} |"
        )
    return rows


def error_rows(setup: str, data: dict[str, Any]) -> list[str]:
    by: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for run in data["runs"]:
        for d in run["depths"]:
            by.setdefault((run["config"], d["depth"]), []).append(d)
    rows = []
    for (config, depth), ds in by.items():

        def mean(key: str, ds: list[dict[str, Any]] = ds) -> str:
            values = [d[key] for d in ds if d.get(key) is not None]
            return "n/a" if not values else f"{100 * sum(values) / len(values):.1f}%"

        rows.append(
            f"| {setup} | {config} | {depth} | {ds[0]['rank']} | {mean('relative_error')} "
            f"| {mean('greedy_relative_error')} | {mean('svd_floor')} | {mean('top_feature_share')} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "experiments")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    k = str(args.repeats)
    timings = []

    samples, t = mlnmf(
        "compare", SAMPLES, "--resize", "256x256", "-c", "ranks=64,32,16",
        "-c", "ranks=64,32,16 fine_tune=off", "--out", out / "samples",
    )  # fmt: skip
    timings.append(("compare samples, ours (2 configurations)", t))
    samples_seed, t = mlnmf(
        "compare", SAMPLES, "--resize", "256x256", "--like-seed", "--out", out / "samples-like-seed"
    )
    timings.append(("compare samples, --like-seed", t))
    rand, t = mlnmf(
        "random-test", "--repeats", k, "--control", SAMPLES / "camera.png", "--out", out / "random"
    )
    timings.append((f"random-test --repeats {k} --control camera.png", t))
    rand_seed, t = mlnmf(
        "random-test", "--like-seed", "--repeats", k, "--control", SAMPLES / "camera.png",
        "--out", out / "random-like-seed",
    )  # fmt: skip
    timings.append((f"random-test --like-seed --repeats {k} --control camera.png", t))

    lines = [
        "Bundled samples (camera, astronaut, coffee) resized to 256x256; similarity = mean cosine",
        "of the principal angles; null = the same statistic on random non-negative matrices of",
        "the same shapes (mean [2.5%, 97.5%] of 20 draws); self = the same image from a random start (init=random, seed + 1);",
        "above chance = (across - null) / (1 - null).",
        "",
        "| setup | configuration | depth | rank | kind | across images | null | self | above chance |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
        *compare_rows("samples, ours", samples),
        *compare_rows("samples, like seed", samples_seed),
        "",
        f"Random pixels: 3 uniform images per repeat, {args.repeats} repeats (image seeds 0..{args.repeats - 1}),",
        "mean [95% interval]; control = camera.png (resized, grey) against the random images.",
        "",
        "| setup | configuration | depth | rank | kind | across images | null | self | above chance | control vs random |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
        *random_rows("random 128x128, ours", rand),
        *random_rows("random 100x100, like seed", rand_seed),
        "",
        "Reconstruction error on the samples, and the share of the features' energy held by",
        "their largest column (mean over the three images):",
        "",
        "| setup | configuration | depth | rank | error | greedy error | SVD floor | top column share |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *error_rows("samples, ours", samples),
        *error_rows("samples, like seed", samples_seed),
        "",
        "Verdicts (depth 1, the one layer of the seed's figures):",
        "",
    ]
    for name, data in (
        ("samples, ours", samples),
        ("samples, like seed", samples_seed),
        ("random, ours", rand),
        ("random, like seed", rand_seed),
    ):
        for v in data["verdicts"]:
            lines.append(f"- {name} [{v['config']}]: {v['verdict']}")
    lines += ["", "Wall time:", ""]
    lines += [f"- {name}: {t:.1f} s" for name, t in timings]
    text = "\n".join(lines) + "\n"
    (out / "experiments.md").write_text(text, encoding="utf-8")
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
