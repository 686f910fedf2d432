"""Fuzzing: property-based tests of every parser, and schemathesis against each service's API.

Hypothesis settings come from a profile: "ci" (the default: a few hundred examples a test, so
the suite stays fast) or "long" (HYPOTHESIS_PROFILE=long, for a search that runs for a while).
The profile is applied per test (`FUZZ`), never loaded globally, so other tests keep theirs."""

import os

from hypothesis import HealthCheck, settings

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=_QUIET, print_blob=True
)
settings.register_profile(
    "long", max_examples=5000, deadline=None, suppress_health_check=_QUIET, print_blob=True
)
PROFILE_NAME = os.environ.get("HYPOTHESIS_PROFILE", "ci")
FUZZ = settings(settings.get_profile(PROFILE_NAME if PROFILE_NAME in ("ci", "long") else "ci"))


def examples(ci: int) -> settings:
    """`FUZZ` with `ci` examples under the ci profile, and 25 times as many under long."""
    scale = 25 if PROFILE_NAME == "long" else 1
    return settings(FUZZ, max_examples=ci * scale)
