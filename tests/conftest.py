"""Shared test helpers: hypothesis profiles, the command-line runner, a loss.

Hypothesis: a bounded run in ``make test``, many more in ``make fuzz``.
``HYPOTHESIS_PROFILE=fuzz`` (or ``pytest --hypothesis-profile=fuzz``) selects
the long run; the property tests take their example counts from
:func:`fuzz_settings`.

:func:`run` drives the real app with Typer's runner, without colour and with a
wide terminal, so that assertions depend on neither.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

# MLNMF_DEBUG: a bug of mlnmf's own raises in the test instead of becoming one line.
ENV = {"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb", "MLNMF_DEBUG": "1"}


def run(*args: str | Path) -> tuple[int, str, str]:
    """``mlnmf *args`` -> (exit code, stdout, stderr); a traceback fails the test."""
    from mlnmf_cli.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], env=ENV, prog_name="mlnmf")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"unexpected exception: {result.exception!r}") from result.exception
    assert "Traceback" not in result.stderr + result.stdout
    return result.exit_code, result.stdout, result.stderr


settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "2000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])

FUZZING = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"


def fuzz_settings(quick: int) -> settings:
    """``quick`` examples in ``make test``, the fuzz profile's count under ``make fuzz``.

    ``make test`` draws the same examples every run (CI must be reproducible);
    ``make fuzz`` draws new ones each time.
    """
    return settings(
        max_examples=settings().max_examples if FUZZING else quick,
        derandomize=not FUZZING,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


def fit_loss(Xo: np.ndarray, U: np.ndarray, V: np.ndarray) -> float:
    """||Xo - V^T U||^2 in float64: the loss one HALS update of V (against U) minimises."""
    R = Xo.astype(float) - V.T.astype(float) @ U.astype(float)
    return float(np.vdot(R, R))


def terminal_signals() -> None:
    """``preexec_fn`` of a child that must react to Ctrl-C as under a terminal: a shell's
    background job inherits SIGINT ignored, and Python then keeps ignoring it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
