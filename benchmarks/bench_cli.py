"""Start-up and demo wall time of the installed `mlnmf` command, as a user meets it.

Run from the repository root (``make bench`` does)::

    .venv/bin/python benchmarks/bench_cli.py [--repeats N] [--demo-repeats N]

Each command runs in a fresh process (``subprocess``), as typed in a shell; the figure is
the median wall time over the repeats. ``python -c pass`` is the interpreter's own start-up,
for reference. The demo is ``make demo``'s decomposition of sample_images/camera.png at ranks
64,32,16 (one BLAS thread, as ``make demo`` runs it), pictures and report included. Also
recorded: whether ``mlnmf --help`` imports NumPy. Everything goes to
benchmarks/results/cli.json, with the environment (versions, CPU, load, commit).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "cli.json"
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

sys.path.insert(0, str(ROOT))
from environment import environment  # noqa: E402


def mlnmf_command() -> list[str]:
    """The installed entry point beside this interpreter, else ``python -m mlnmf_cli``."""
    script = Path(sys.executable).with_name("mlnmf")
    if script.exists():
        return [str(script)]
    found = shutil.which("mlnmf")
    return [found] if found else [sys.executable, "-m", "mlnmf_cli"]


def timed(label: str, cmd: list[str], repeats: int, env: dict[str, str]) -> dict[str, Any]:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, check=False)
        seconds.append(round(time.perf_counter() - start, 4))
        if done.returncode != 0:
            sys.stderr.write(done.stderr.decode(errors="replace"))
            raise SystemExit(f"bench_cli: error: {label} exited with {done.returncode}")
    median = statistics.median(seconds)
    print(f"  {label:<60} {median:7.3f} s (median of {repeats})")
    return {"command": label, "seconds": seconds, "median_seconds": median, "repeats": repeats}


def help_imports_numpy(cmd: list[str], env: dict[str, str]) -> bool | None:
    """Whether printing ``--help`` loads NumPy (``python -X importtime`` lists every import)."""
    if cmd[0] == sys.executable:
        argv = [sys.executable, "-X", "importtime", *cmd[1:], "--help"]
    else:
        argv = [sys.executable, "-X", "importtime", "-m", "mlnmf_cli", "--help"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None
    return any(line.split("|")[-1].strip() == "numpy" for line in done.stderr.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="runs of each start-up command")
    parser.add_argument("--demo-repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100"}
    mlnmf = mlnmf_command()
    print(f"start-up of {' '.join(mlnmf)}:")
    result: dict[str, Any] = {"environment": environment(), "measurements": []}
    runs = result["measurements"]
    runs.append(timed("python -c pass", [sys.executable, "-c", "pass"], args.repeats, env))
    runs.append(timed("mlnmf --help", [*mlnmf, "--help"], args.repeats, env))
    runs.append(timed("mlnmf --version", [*mlnmf, "--version"], args.repeats, env))
    with tempfile.TemporaryDirectory(prefix="mlnmf-bench-cli-") as tmp:
        demo = ["decompose", "sample_images/camera.png", "--layers", "3", "--ranks", "64,32,16"]
        runs.append(
            timed(
                "mlnmf " + " ".join(demo),
                [*mlnmf, *demo, "--out", tmp, "--force", "--quiet"],
                args.demo_repeats,
                {**env, **ONE_THREAD},
            )
        )
    result["help_imports_numpy"] = help_imports_numpy(mlnmf, env)
    print(f"  mlnmf --help imports NumPy: {result['help_imports_numpy']}")
    result["environment"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
