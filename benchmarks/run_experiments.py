"""`make experiments`: the seed's equivariance experiments, measured with the real commands.

Runs ``mlnmf compare`` on the bundled samples and ``mlnmf random-test`` on random
pixels, each with our default pipeline and with ``--like-seed``, then prints the
Markdown tables of docs/experiments.md (also written to ``<out>/experiments.md``).
Every number comes from the commands' ``--json`` output, which is kept, with the
environment and wall times, in benchmarks/results/experiments.json: ``make tables``
renders the documentation's tables from that file (benchmarks/tables.py).

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

from environment import environment  # noqa: E402
from tables import experiments_markdown  # noqa: E402

SAMPLES = ROOT / "sample_images"
RESULTS = ROOT / "benchmarks" / "results" / "experiments.json"


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

    result = {
        "environment": environment(),
        "repeats": args.repeats,
        "timings": [{"run": name, "seconds": round(t, 1)} for name, t in timings],
        "samples": samples,
        "samples_like_seed": samples_seed,
        "random": rand,
        "random_like_seed": rand_seed,
    }
    RESULTS.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    text = experiments_markdown(result)
    (out / "experiments.md").write_text(text, encoding="utf-8")
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
