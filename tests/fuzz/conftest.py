"""Hypothesis profiles for the property-based suite: bounded in CI, longer on request.

``HYPOTHESIS_PROFILE=long pytest tests/fuzz`` runs many more examples (minutes) to hunt for
crashes; the default ``ci`` profile keeps the folder under a minute on one core and is
derandomized, so CI runs the same examples every time.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,  # file I/O and pandas make timings noisy on shared CI machines
    "database": None,  # no .hypothesis folder in the checkout
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": True,  # a failure prints the line that replays it
}
settings.register_profile("ci", max_examples=60, derandomize=True, **_COMMON)
settings.register_profile("long", max_examples=3000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
