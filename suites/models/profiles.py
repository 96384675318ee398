"""Hypothesis profiles for the model suites.

* ``ci``      - bounded: 60 examples of at most 40 steps, no deadline (network jitter is not a bug),
  no example database (a run directory is the record), the failing example printed as a blob;
* ``nightly`` - deeper: 300 examples of up to 80 steps.

Neither is derandomized: the run's seed (``--hypothesis-seed``, chosen and printed by ``certify``)
decides the examples, so a failure is replayed by passing the same seed.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

_COMMON = {"deadline": None, "database": None, "print_blob": True, "derandomize": False,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much,
                                     HealthCheck.function_scoped_fixture]}

settings.register_profile("ci", max_examples=60, stateful_step_count=40, **_COMMON)
settings.register_profile("nightly", max_examples=300, stateful_step_count=80, **_COMMON)

PROFILE_FOR = {"quick": "ci", "full": "nightly"}
"""Which Hypothesis profile each certification profile runs."""
