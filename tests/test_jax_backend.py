"""The JAX backend (``backend="jax"``) against the project's closed forms and against autograd.

* Same seed, same samples: at x64 the JAX backend draws stochgrad's own numpy noise streams, so every
  estimate equals the autograd backend's to float tolerance (bit for bit where no framework kernel
  differs; the Gamma family's ``dz/dalpha`` is JAX's own ``random_gamma_grad`` against autograd's
  finite difference of scipy's ``gammainc``, ~1e-10 apart).
* The closed-form suites: cases of ``tests/test_distributions.py`` (scipy references),
  ``tests/test_estimators.py`` and ``tests/test_discrete.py`` (hand derivations), run on the jax
  backend by importing those modules' cases and test functions (a backend argument, not copies),
  judged by ``assert_estimate`` (5-6 standard errors).
* float32 by default (JAX's convention), float64 with ``jax_enable_x64``; implicit gradients first
  order only (PlanError by name), higher orders of the score estimator through ``jax.grad``.

Every test that needs x64 turns it on with the ``x64`` fixture and restores it.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import special

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import stochgrad as sg  # noqa: E402
from stochgrad.cli import main  # noqa: E402
from stochgrad.testing import assert_estimate, assert_within_stderr  # noqa: E402

import test_discrete as discrete_cases  # noqa: E402  (tests/ is on sys.path: pytest's rootdir conftest)
import test_distributions as distribution_cases  # noqa: E402
import test_estimators as estimator_cases  # noqa: E402

N = 20_000


# -- the same samples as the autograd backend ----------------------------------------------------------

SAME = [  # (text, params, estimators, relative tolerance of the gradients)
    ("E[z**2, z ~ Normal(mu, sigma)]", {"mu": 1.0, "sigma": 2.0}, {}, 1e-12),
    ("E[z**2, z ~ Normal(mu, sigma)]", {"mu": 1.0, "sigma": 2.0}, {"z": "score"}, 1e-10),  # leave-one-out
    ("E[y**2 + y, y ~ Bernoulli(p)]", {"p": 0.3}, {}, 1e-12),  # enumeration
    ("E[sum(w * z), z ~ Categorical(logits=l)]", {"l": np.array([0.1, 0.5, -0.3]), "w": np.array([1.0, 2.0, 4.0])},
     {"z": "relaxed:temperature=0.5"}, 1e-10),
    ("E[y, y ~ Poisson(r)]", {"r": 2.0}, {}, 1e-12),
    ("E[sum(z**2), z ~ MultivariateNormal(m, covariance_matrix=S)]",
     {"m": np.array([1.0, 2.0]), "S": np.array([[2.0, 0.5], [0.5, 1.0]])}, {}, 1e-10),  # cholesky, triangular solve
    ("E[z**2, z ~ Gamma(a, r)]", {"a": 1.7, "r": 0.8}, {}, 1e-7),  # implicit: jax's dz/da vs a finite difference
]


@pytest.mark.parametrize(("text", "params", "estimators", "rtol"), SAME, ids=[f"{t}-{e}" for t, _, e, _ in SAME])
def test_same_seed_same_estimate_as_autograd(x64, text, params, estimators, rtol):
    a, j = (sg.estimate(text, params, n=N, seed=5, backend=b, estimators=estimators) for b in ("autograd", "jax"))
    assert j.backend == "jax" and str(j.plan) == str(a.plan)
    np.testing.assert_allclose(j.value, a.value, rtol=1e-12)
    np.testing.assert_allclose(j.value_stderr, a.value_stderr, rtol=1e-10)
    for k in params:
        np.testing.assert_allclose(j.grad[k], a.grad[k], rtol=rtol, atol=1e-12, err_msg=k)
        np.testing.assert_allclose(j.stderr[k], a.stderr[k], rtol=rtol, atol=1e-12, err_msg=k)


# -- the closed-form suites, on jax ----------------------------------------------------------------------

DIST = {c.name: c for c in distribution_cases.CASES}
# location-scale, transformed, inverse-CDF (Kumaraswamy), implicit (Gamma, Beta) and rejection (VonMises) samplers
PATHWISE = [("Normal", "sin(z)"), ("LogNormal", "z**2"), ("Kumaraswamy", "z**2"), ("Gamma", "z**2"), ("Beta", "z"),
            ("StudentT", "z**2"), ("VonMises", "cos(z)")]


@pytest.mark.parametrize(("name", "cost"), PATHWISE, ids=[f"{n}-{c}" for n, c in PATHWISE])
def test_pathwise_matches_scipy(x64, name, cost):
    case = DIST[name]
    params = case.score_points[0]
    value, grad = distribution_cases.reference(case, cost, params)
    r = distribution_cases.run(case, cost, params, "jax", n=N)
    assert r.plan.node("z").estimator == "pathwise"
    assert_estimate(r, value=value, grad=grad)


@pytest.mark.parametrize("name", ["Normal", "Exponential", "Laplace"])
def test_score_function_matches_scipy(x64, name):
    case = DIST[name]
    params = case.score_points[1]
    value, grad = distribution_cases.reference(case, case.score_cost, params)
    r = distribution_cases.run(case, case.score_cost, params, "jax", n=4 * N, estimators={"z": "score"})
    assert r.plan.node("z").estimator == "score"
    assert_estimate(r, value=value, grad=grad)


@pytest.mark.parametrize("name", ["Normal", "Beta", "VonMises"])
def test_log_prob_is_scipy_logpdf(x64, name):
    distribution_cases.test_log_prob_is_scipy_logpdf(DIST[name], "jax")


@pytest.mark.parametrize("check", [
    lambda b: estimator_cases.test_normal_square_every_estimator(b, "pathwise"),
    lambda b: estimator_cases.test_normal_square_every_estimator(b, "score"),
    estimator_cases.test_leave_one_out_baseline_reduces_variance,
    lambda b: estimator_cases.test_nested_expectation(b, {"z": "score"}),
    estimator_cases.test_score_node_downstream_of_pathwise_node,
    estimator_cases.test_vector_parameters_and_broadcasting,
    discrete_cases.test_default_plan_enumerates_bernoulli_exactly,
    discrete_cases.test_gumbel_softmax_at_low_temperature_is_nearly_unbiased,
    discrete_cases.test_categorical_batch_enumerates_the_joint_support,
    discrete_cases.test_joint_enumeration_of_two_nodes,
], ids=["normal-pathwise", "normal-score", "loo", "nested", "score-after-pathwise", "vector", "enumerate",
        "gumbel-softmax", "categorical-enumerate", "joint-enumeration"])
def test_closed_form_suite_on_jax(x64, check):
    check("jax")


def test_float32_by_default_and_still_right():
    """Without x64, JAX computes in float32 (its convention): the estimate is still within its standard errors."""
    assert not jax.config.jax_enable_x64
    B = sg.get_backend("jax")
    assert B.dtype == np.float32 and B.asarray(np.ones(2)).dtype == jnp.float32
    mu, sigma = 1.5, 0.8
    r = sg.estimate("E[z**2, z ~ Normal(mu, sigma)]", {"mu": mu, "sigma": sigma}, n=N, seed=2, backend="jax")
    assert_estimate(r, value=mu**2 + sigma**2, grad={"mu": 2 * mu, "sigma": 2 * sigma})
    out = sg.compile("E[z**2, z ~ Normal(mu, sigma)]", backend="jax", n=64, seed=0)(mu=mu, sigma=sigma)
    assert out.dtype == jnp.float32


def test_float64_with_x64(x64):
    B = sg.get_backend("jax")
    assert B.dtype == np.float64
    assert sg.compile("E[z, z ~ Normal(mu, 1)]", backend="jax", n=8, seed=0)(mu=0.5).dtype == jnp.float64


def test_dtype_option_float64_without_x64_is_refused():
    assert not jax.config.jax_enable_x64
    with pytest.raises(sg.BackendError, match="dtype='float64' needs 64-bit JAX: set jax.config.update"):
        sg.estimate("E[z, z ~ Normal(mu, 1)]", {"mu": 0.0}, n=10, backend="jax", backend_options={"dtype": "float64"})
    with pytest.raises(sg.ValidationError, match="jax backend option dtype='int8'"):
        sg.get_backend("jax", dtype="int8")


# -- derivatives through jax.grad ----------------------------------------------------------------------

GAMMA = "E[z**2, z ~ Gamma(x, 2)]"  # x (x + 1) / 4: first derivative (2x + 1) / 4, second 1/2 (hand moments)
X0 = 1.5


def test_second_derivative_through_implicit_gamma_is_refused_by_name(x64):
    f = sg.compile(GAMMA, backend="jax", n=N, seed=0)  # n as below: JAX compiles its kernels once per shape
    with pytest.raises(sg.PlanError, match=r"^z ~ Gamma\(x, 2\): no second derivative through its pathwise gradient.*"
                                           r"estimators=\{'z': 'score'\}"):
        jax.grad(jax.grad(lambda x: f(x=x)))(X0)


def test_score_estimator_second_derivative_is_the_closed_form(x64):
    f = sg.compile(GAMMA, backend="jax", n=N, seed=100, estimators={"z": "score"})
    hess = [float(jax.grad(jax.grad(lambda x: f(x=x)))(X0)) for _ in range(4)]
    se = np.std(hess, ddof=1) / math.sqrt(len(hess))
    assert se < 0.5 / 3  # precise enough that a dropped or sign-flipped term fails
    assert_within_stderr(np.mean(hess), 0.5, se)


def test_implicit_gamma_gradient_is_the_inverse_cdf_derivative(x64):
    """dz/da = -(dF/da) / p(z; a), with dF/da by a central difference of scipy's gammainc (independent of JAX)."""
    B = sg.get_backend("jax")
    a = np.array([0.3, 1.0, 2.5, 7.0])
    z = np.array([0.05, 0.8, 2.0, 6.5])
    got = jax.grad(lambda al: jnp.sum(B.implicit_gamma(al, jnp.asarray(z), "no")))(jnp.asarray(a))
    h = 1e-6 * a
    dF = (special.gammainc(a + h, z) - special.gammainc(a - h, z)) / (2 * h)
    pdf = np.exp((a - 1) * np.log(z) - z - special.gammaln(a))
    np.testing.assert_allclose(np.asarray(got), -dF / pdf, rtol=1e-6)


def test_foreign_arrays_are_refused_by_name():
    f = sg.compile("E[z, z ~ Normal(mu, 1)]", backend="jax", n=4, seed=0)
    with pytest.raises(sg.ValidationError, match="parameter 'mu' is a bool array"):
        f(mu=jnp.array(True))


# -- compare, the command line, the core without jax --------------------------------------------------------

def test_compare_on_jax(x64):
    c = sg.compare("E[z**2, z ~ Normal(mu, 1)]", {"mu": 1.0}, n=4000, backend="jax", seed=0)
    assert c.backend == "jax" and c.exact == {"mu": 2.0}
    for row in c.rows:
        if row.unbiased:  # within 6 standard errors; an exact row (pathwise_delta here: s.e. 0) to rounding
            assert abs(row.grad["mu"] - 2.0) <= 6 * row.stderr["mu"] + 1e-9, row.estimator


def test_plan_estimate_on_jax_is_sg_estimate(x64):
    text, params = "E[(z + 3)**2, z ~ Normal(mu, 1)]", {"mu": 0.5}
    p = sg.plan(text, {"mu": 0.5}, backend="jax", estimators={"z": "score"})
    r = p.estimate(params, n=N, seed=4)
    assert r.backend == "jax"
    assert r.grad == sg.estimate(text, params, n=N, seed=4, backend="jax", estimators={"z": "score"}).grad
    assert_estimate(r, value=3.5**2 + 1, grad={"mu": 7.0})


def test_cli_estimate_backend_jax(capsys):
    assert main(["estimate", "E[z**2, z ~ Normal(mu, sigma)]", "--at", "mu=1", "--at", "sigma=2", "-n", "4000",
                 "--backend", "jax", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "(n=4000, backend=jax, seed=0)" in out and "d/dmu = " in out


def test_core_imports_without_jax():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["jax"] = None
        import stochgrad as sg
        print(sg.estimate("E[z, z ~ Normal(mu, 1)]", {"mu": 0.5}, n=10, seed=0).value)
        try:
            sg.get_backend("jax")
        except sg.BackendError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "backend 'jax' needs jax, which is not installed: pip install jax  (or: pip install 'stochgrad[jax]')" in out


# -- pure objectives of a PRNG key: jax.jit, jax.vmap over keys, jax.grad, jax.hessian ------------------------

NORMAL = "E[z**2, z ~ Normal(mu, sigma)]"


def test_keyed_objective_is_a_pure_function_of_key_and_parameters(x64):
    f = sg.compile(NORMAL, backend="jax", n=256)
    k = jax.random.key(3)
    a = f(key=k, mu=1.0, sigma=2.0)
    assert f(key=jax.random.key(4), mu=1.0, sigma=2.0) != a
    assert f(key=k, mu=1.0, sigma=2.0) == a  # same key, same result, whatever was called in between
    np.testing.assert_allclose(jax.jit(f)(key=k, mu=1.0, sigma=2.0), a, rtol=1e-12)
    np.testing.assert_allclose(f(key=jax.random.PRNGKey(3), mu=1.0, sigma=2.0), a, rtol=1e-12)  # raw keys too
    grad = jax.grad(lambda m, s, key: f(key=key, mu=m, sigma=s), argnums=(0, 1))
    np.testing.assert_allclose(jax.jit(grad)(1.0, 2.0, k), grad(1.0, 2.0, k), rtol=1e-10)
    # pathwise: d2/dmu2 (mu + sigma eps)**2 = 2 for every sample, so the Hessian is exactly 2
    assert float(jax.hessian(lambda m: f(key=k, mu=m, sigma=2.0))(1.0)) == pytest.approx(2.0, rel=1e-12)


KEYED = [  # (text, estimators, params, exact gradient by hand)
    (NORMAL, {}, {"mu": 1.5, "sigma": 0.8}, {"mu": 3.0, "sigma": 1.6}),
    (NORMAL, {"z": "score"}, {"mu": 1.5, "sigma": 0.8}, {"mu": 3.0, "sigma": 1.6}),  # leave-one-out
    (GAMMA, {}, {"x": X0}, {"x": (2 * X0 + 1) / 4}),  # implicit: jax.random.gamma draws, dz/dx of random_gamma_grad
    ("E[(y - 0.3)**2, y ~ Bernoulli(p)]", {"y": "score"}, {"p": 0.4}, {"p": 0.4}),  # (1-.3)^2 - .3^2 = 0.4
    ("E[y * y, y ~ Poisson(r)]", {}, {"r": 2.0}, {"r": 2 * 2.0 + 1}),  # E[y^2] = r + r^2
]


@pytest.mark.parametrize(("text", "estimators", "params", "exact"), KEYED, ids=[f"{t}-{e}" for t, e, _, _ in KEYED])
def test_jitted_vmapped_gradients_over_keys_match_the_closed_form(x64, text, estimators, params, exact):
    """32 independent gradient estimates (one per key, jax.vmap inside jax.jit): their mean within 5-6 of its
    standard errors of the hand-derived gradient, and that standard error below 3% of it (measured: 0.15% to
    2.3%, the score estimator's d/dsigma the largest), so a gradient 15% off fails."""
    f = sg.compile(text, backend="jax", n=2048, estimators=estimators)
    names = sorted(params)
    grad = jax.grad(lambda ps, key: f(key=key, **dict(zip(names, ps))))
    keys = jax.random.split(jax.random.key(7), 32)
    grads = jax.jit(jax.vmap(grad, in_axes=(None, 0)))([params[k] for k in names], keys)
    for name, g in zip(names, grads):
        g = np.asarray(g)
        se = g.std(ddof=1) / math.sqrt(len(g))
        assert se < 0.03 * abs(exact[name])
        assert_within_stderr(g.mean(), exact[name], se, name=f"{text} d/d{name}")


def test_keyed_objective_is_float32_by_default():
    f = sg.compile(NORMAL, backend="jax", n=64)
    assert jax.jit(f)(key=jax.random.key(0), mu=1.0, sigma=2.0).dtype == jnp.float32


def test_jit_without_a_key_is_refused_by_name():
    """Without a key the noise is stochgrad's seeded numpy streams, which a jit trace would freeze: refused."""
    f = sg.compile(NORMAL, backend="jax", n=16, seed=0, validate=False)
    with pytest.raises(sg.BackendError, match=r"traced abstractly .jax.jit or jax.vmap. but got no PRNG key"):
        jax.jit(lambda m: f(mu=m, sigma=1.0))(1.0)
    with pytest.raises(sg.ValidationError, match="key must be a JAX PRNG key"):
        f(key=3, mu=1.0, sigma=1.0)
    with pytest.raises(sg.BackendError, match="the autograd backend takes no PRNG key"):
        sg.compile(NORMAL, backend="autograd", n=4)(key=jax.random.key(0), mu=1.0, sigma=1.0)


def test_jax_implements_every_primitive():
    from stochgrad.backend import PRIMITIVES

    B = sg.get_backend("jax")
    assert set(B.fn) == PRIMITIVES and "implicit_reparam" in B.capabilities


def test_user_function_in_jax_numpy(x64):
    """A user function written in jax.numpy (as a Flax/Equinox apply would be): E[sin z] = sin(mu) exp(-s^2/2)."""
    e = sg.parse("E[f(z), z ~ Normal(mu, s)]", functions={"f": jnp.sin})
    mu, s = 0.3, 1.2
    damp = math.exp(-s * s / 2)
    r = sg.estimate(e, {"mu": mu, "s": s}, n=N, seed=0, backend="jax")
    assert_estimate(r, value=math.sin(mu) * damp, grad={"mu": math.cos(mu) * damp, "s": -s * math.sin(mu) * damp})
    f = sg.compile(e, backend="jax", n=N)
    g = jax.jit(jax.grad(lambda m, k: f(key=k, mu=m, s=s)))(mu, jax.random.key(0))
    assert_within_stderr(float(g), math.cos(mu) * damp, float(r.stderr["mu"]))  # same n: the same standard error


def test_a_keyed_call_that_is_not_finite_is_located():
    f = sg.compile("E[log(z), z ~ Normal(mu, 1)]", backend="jax", n=64)
    with pytest.warns(sg.NonFiniteWarning, match=r"first seen in `log\(z\)` is NaN in \d+ of 64 entries"):
        f(key=jax.random.key(0), mu=0.0)
