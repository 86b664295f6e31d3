"""Shared pytest configuration: the ``slow`` marker, hypothesis profiles, an empty cache.

The default hypothesis profile is small and derandomized so CI is fast and
deterministic; ``HYPOTHESIS_PROFILE=slow`` runs many more examples (use it with
``-m slow`` or on its own for a long local run).
"""

import os
import tempfile

import pytest

# auto's choices must not depend on a calibration the developer's machine happens to have cached
# (skconv.calibrate writes one per machine): the tests see only the shipped cost model, and what a
# test calibrates goes to a directory of its own.
os.environ["SKCONV_CACHE_DIR"] = tempfile.mkdtemp(prefix="skconv-test-cache-")

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # hypothesis is a test dependency; the other tests run without it
    settings = None

if settings is not None:
    settings.register_profile(
        "default",
        max_examples=30,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    settings.register_profile(
        "slow",
        max_examples=1000,
        deadline=None,
        derandomize=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running tests (deselect with '-m \"not slow\"')")


def pytest_collection_modifyitems(config, items):
    # Tests marked slow run only when asked for: -m slow, or HYPOTHESIS_PROFILE=slow.
    if os.environ.get("HYPOTHESIS_PROFILE") == "slow" or "slow" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow or HYPOTHESIS_PROFILE=slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
