"""pytest configuration: tests marked `large` (several GiB of memory) run only with QSPARSE_LARGE_TESTS=1;
hypothesis runs a bounded, derandomized number of examples so that the suite stays fast and repeatable."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/helpers.py

try:
    from hypothesis import HealthCheck, settings

    settings.register_profile("qsparse", max_examples=40, deadline=None, derandomize=True,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.load_profile(os.environ.get("QSPARSE_HYPOTHESIS_PROFILE", "qsparse"))
except ImportError:  # hypothesis tests skip themselves
    pass


def pytest_configure(config):
    config.addinivalue_line("markers", "large: allocates several GiB (run with QSPARSE_LARGE_TESTS=1)")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("QSPARSE_LARGE_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="large test: set QSPARSE_LARGE_TESTS=1 to run it")
    for item in items:
        if "large" in item.keywords:
            item.add_marker(skip)
