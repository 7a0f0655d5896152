"""Shared test configuration.

Hypothesis profiles: ``ci`` (derandomized, no deadline; loaded when $CI is set)
and ``dev`` (random, no deadline: the torch backend's first call is slow).
Select explicitly with HYPOTHESIS_PROFILE.

Under pytest-xdist (``-n``, on by default through pyproject's addopts) each worker is one process
on one core: torch, numpy's BLAS and XLA get one thread each (set before any of them is imported,
and inherited by the example scripts the tests run), instead of every worker starting one thread
per core.
"""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()

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
