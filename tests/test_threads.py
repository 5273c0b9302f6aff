"""The command line pins BLAS to one thread before NumPy loads, unless the user chose."""

from __future__ import annotations

import os
import subprocess
import sys

from mlnmf_cli.threads import THREAD_VARIABLES

PROBE = """
import sys
from mlnmf_cli.cli import app
from mlnmf_cli import cli
cli.app = lambda: None  # main() without running a command
cli.main()
import numpy, threadpoolctl
print(max(p["num_threads"] for p in threadpoolctl.threadpool_info()))
"""


def _threads(**env: str) -> int:
    clean = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


def test_main_sets_one_blas_thread_before_numpy_loads() -> None:
    assert _threads() == 1


def test_a_users_thread_setting_is_kept() -> None:
    assert _threads(OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2") == 2
