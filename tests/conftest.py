"""Hypothesis profiles: a bounded run in ``make test``, many more in ``make fuzz``.

``HYPOTHESIS_PROFILE=fuzz`` (or ``pytest --hypothesis-profile=fuzz``) selects
the long run; the property tests take their example counts from
:func:`fuzz_settings`.
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, settings

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
