"""Hypothesis profiles: a bounded run in ``make test``, many more in ``make fuzz``.

``HYPOTHESIS_PROFILE=fuzz`` (or ``pytest --hypothesis-profile=fuzz``) selects
the long run; tests/test_fuzz.py scales its example counts from it.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "2000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])
