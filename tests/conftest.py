"""Shared test configuration.

Hypothesis profiles: ``ci`` (derandomized, no deadline; loaded when $CI is set)
and ``dev`` (random, no deadline: the torch backend's first call is slow).
Select explicitly with HYPOTHESIS_PROFILE.

Under pytest-xdist (``-n``, on by default through pyproject's addopts) each worker is one process
on one core: torch, numpy's BLAS and XLA get one thread each (set before any of them is imported,
and inherited by the example scripts the tests run), instead of every worker starting one thread
per core.

The ``backend`` fixture runs a test on every backend; on ``"jax"`` in float64 (``jax_enable_x64`` on for
the test, restored after it), so tolerances written for float64 hold (float32, JAX's default, has its own
tests in ``tests/test_jax_backend.py``).  ``@not_on_jax("why")`` skips a test's jax case, naming why.  By default the
jax cases of the closed-form suites in ``JAX_SUITES`` run; ``STOCHGRAD_JAX=all`` runs every jax case.
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

BACKENDS = ["autograd", "torch", "jax"]


def not_on_jax(reason):
    """Mark a test that takes the ``backend`` fixture as not applicable to jax; ``reason`` says why."""
    return pytest.mark.not_on_jax(reason=reason)


def pytest_configure(config):
    config.addinivalue_line("markers", "not_on_jax(reason): the backend fixture skips the test's jax case")
    config.addinivalue_line("markers", "jax: a test's jax case (added by collection; CI may run them apart, -m jax)")


#: the closed-form suites whose jax cases run by default; every other test's jax case runs with
#: STOCHGRAD_JAX=all (they pass, but JAX's op-by-op dispatch makes them about 1 s each: all of them
#: would more than double the suite's time)
JAX_SUITES = frozenset({"test_distributions.py", "test_estimators.py", "test_kl.py", "test_log_prob.py",
                        "test_multisample.py", "test_vimco_dreg.py"})


def pytest_collection_modifyitems(config, items):
    everything = os.environ.get("STOCHGRAD_JAX") == "all"
    kept, left = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("backend") == "jax":
            item.add_marker(pytest.mark.jax)
            if not everything and item.path.name not in JAX_SUITES:
                left.append(item)
                continue
        kept.append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept


def grad_of(backend):
    """The reverse-mode ``grad`` a non-torch backend's objective is differentiated with, as a function
    of a float: ``jax.grad`` on jax, ``autograd.grad`` on autograd."""
    if backend == "jax":
        import jax

        return jax.grad
    import autograd

    return autograd.grad


def numpy_of(backend):
    """The numpy a non-torch backend's user code is written in: ``jax.numpy`` on jax, else ``autograd.numpy``."""
    if backend == "jax":
        import jax.numpy as jnp

        return jnp
    import autograd.numpy as anp

    return anp


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(autouse=True)
def _jax_in_float64(request):
    """A test whose ``backend`` (the fixture's, or a test's own parametrisation) is ``"jax"`` runs with
    ``jax_enable_x64`` on, restored after it; one marked ``not_on_jax`` is skipped, with its reason."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or callspec.params.get("backend") != "jax":
        yield
        return
    mark = request.node.get_closest_marker("not_on_jax")
    if mark is not None:
        pytest.skip(f"not on jax: {mark.kwargs['reason']}")
    yield from _x64()


def _x64():
    jax = pytest.importorskip("jax")
    old = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)


@pytest.fixture
def x64():
    """JAX in float64 for one test (``jax_enable_x64``), restored after it."""
    yield from _x64()
