"""Shared test configuration.

Hypothesis profiles: ``ci`` (derandomized, no deadline; loaded when $CI is set)
and ``dev`` (random, no deadline: the torch backend's first call is slow).
Select explicitly with HYPOTHESIS_PROFILE.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))

BACKENDS = ["autograd", "torch"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def x64():
    """JAX in float64 for one test (``jax_enable_x64``), restored after it."""
    jax = pytest.importorskip("jax")
    old = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)
