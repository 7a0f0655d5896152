"""The closed-form oracle (stochgrad.testing.oracle) against hand-derived identities.

Values are written out by hand from textbook moments; gradients either by hand
or as central differences of the hand-written value.  One test compares the
oracle with Monte Carlo estimates, which checks both sides.
"""

import math
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import stochgrad as sg
from stochgrad.errors import StochgradError, ValidationError

sympy = pytest.importorskip("sympy")
from stochgrad.testing.oracle import Exact, exact  # noqa: E402

SQRT2PI = math.sqrt(2 * math.pi)


def phi(x):
    return math.exp(-x * x / 2) / SQRT2PI


def Phi(x):
    return 0.5 * math.erfc(-x / math.sqrt(2))


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def same_formula(formula, expected, names):
    """``formula`` (oracle's string) equals ``expected`` (sympy text) for real positive symbols."""
    syms = {n: sympy.Symbol(n, positive=True) for n in names}
    got = sympy.parse_expr(formula, local_dict=syms)
    want = sympy.parse_expr(expected, local_dict=syms)
    return sympy.simplify(got - want) == 0


def check(r, value, grad, rel=1e-9):
    assert isinstance(r, Exact)
    assert r.value == pytest.approx(value, rel=rel, abs=1e-12)
    assert set(r.grad) == set(grad)
    for k, g in grad.items():
        assert r.grad[k] == pytest.approx(g, rel=rel, abs=1e-12), k


# -- the examples of the brief ------------------------------------------------------------------


def test_normal_second_moment():
    r = exact("E[z**2, z ~ Normal(mu, sigma)]", {"mu": 1.5, "sigma": 0.7})
    check(r, 1.5**2 + 0.7**2, {"mu": 3.0, "sigma": 1.4})
    assert isinstance(r.value, float) and isinstance(r.grad["mu"], float)
    assert same_formula(r.formula, "mu**2 + sigma**2", ["mu", "sigma"])
    assert same_formula(r.grad_formula["sigma"], "2*sigma", ["mu", "sigma"])


def test_exponential_mean():
    r = exact("E[z, z ~ Exponential(rate)]", {"rate": 2.5})
    check(r, 1 / 2.5, {"rate": -1 / 2.5**2})
    assert same_formula(r.formula, "1/rate", ["rate"])


def test_bernoulli_square_is_p():
    r = exact("E[y**2, y ~ Bernoulli(p)]", {"p": 0.3})
    check(r, 0.3, {"p": 1.0})
    s = sigmoid(0.4)
    check(exact("E[y, y ~ Bernoulli(logits=l)]", {"l": 0.4}), s, {"l": s * (1 - s)})


def test_poisson_second_moment():
    r = exact("E[x**2, x ~ Poisson(r)]", {"r": 1.7})
    check(r, 1.7 + 1.7**2, {"r": 1 + 2 * 1.7})
    assert same_formula(r.formula, "r + r**2", ["r"])


def test_uniform_mean():
    r = exact("E[z, z ~ Uniform(low, high)]", {"low": -1.0, "high": 4.0})
    check(r, 1.5, {"low": 0.5, "high": 0.5})


def test_dependent_bindings():
    text = "E[x**2, z ~ Normal(mu, 1), x ~ Normal(z, s)]"
    t0 = time.monotonic()
    r = exact(text, {"mu": 0.5, "s": 2.0}, timeout=60)  # ~1 s here; generous for a loaded machine
    assert r is not None, f"sympy did not manage (took {time.monotonic() - t0:.1f}s)"
    check(r, 0.25 + 1 + 4, {"mu": 1.0, "s": 4.0})
    assert same_formula(r.formula, "mu**2 + 1 + s**2", ["mu", "s"])
    # a count whose rate is itself random: E[x] = E[r] = a / 1
    check(exact("E[x, r ~ Gamma(a, 1), x ~ Poisson(r)]", {"a": 2.5}), 2.5, {"a": 1.0})


def test_nested_expectation():
    # the inner E is exact (z), so this is E[z**2] -- not the library's one-inner-sample estimate
    r = exact("E[E[x, x ~ Normal(z, 1)]**2, z ~ Normal(mu, 1)]", {"mu": 0.5})
    check(r, 1.25, {"mu": 1.0})


def test_comparisons_become_indicators():
    r = exact("E[z > 0, z ~ Normal(mu, 1)]", {"mu": 0.3})
    check(r, Phi(0.3), {"mu": phi(0.3)})
    # E[sign(z)] = 2 Phi(mu/s) - 1
    r = exact("E[sign(z), z ~ Normal(mu, s)]", {"mu": 0.3, "s": 2.0})
    check(r, 2 * Phi(0.15) - 1, {"mu": phi(0.15), "s": -0.3 / 2.0 * phi(0.15)})
    # P(x > 2) = 1 - e^-r (1 + r + r^2/2); derivative e^-r r^2 / 2 (counts summed below the threshold)
    rate = 1.3
    r = exact("E[x > 2, x ~ Poisson(r)]", {"r": rate})
    check(r, 1 - math.exp(-rate) * (1 + rate + rate**2 / 2), {"r": math.exp(-rate) * rate**2 / 2})
    # P(z < 1) for an Exponential
    check(exact("E[z < 1, z ~ Exponential(r)]", {"r": 0.8}), 1 - math.exp(-0.8), {"r": math.exp(-0.8)})


# -- more distributions: value by hand, gradient by central differences of it --------------------


def _gamma(x):
    return math.gamma(x)


IDENTITIES = [
    ("E[z**3, z ~ Normal(mu, s)]", {"mu": 0.4, "s": 1.1}, lambda mu, s: mu**3 + 3 * mu * s**2),
    ("E[exp(z), z ~ Normal(mu, s)]", {"mu": 0.4, "s": 0.6}, lambda mu, s: math.exp(mu + s**2 / 2)),
    ("E[z, z ~ LogNormal(mu, s)]", {"mu": 0.2, "s": 0.5}, lambda mu, s: math.exp(mu + s**2 / 2)),
    ("E[z**2, z ~ Laplace(m, b)]", {"m": 0.3, "b": 0.9}, lambda m, b: m**2 + 2 * b**2),
    ("E[z, z ~ Gumbel(m, b)]", {"m": 0.3, "b": 0.9}, lambda m, b: m + 0.5772156649015329 * b),
    ("E[z**2, z ~ Logistic(m, b)]", {"m": 0.3, "b": 0.9}, lambda m, b: m**2 + math.pi**2 * b**2 / 3),
    ("E[z, z ~ Weibull(lam, k)]", {"lam": 1.5, "k": 2.5}, lambda lam, k: lam * _gamma(1 + 1 / k)),
    ("E[z, z ~ Gamma(a, r)]", {"a": 2.5, "r": 1.5}, lambda a, r: a / r),
    ("E[1/z, z ~ Gamma(a, r)]", {"a": 2.5, "r": 1.5}, lambda a, r: r / (a - 1)),
    ("E[z, z ~ Beta(a, b)]", {"a": 2.0, "b": 3.0}, lambda a, b: a / (a + b)),
    ("E[z, z ~ Kumaraswamy(a, b)]", {"a": 2.0, "b": 3.0},
     lambda a, b: b * _gamma(1 + 1 / a) * _gamma(b) / _gamma(1 + 1 / a + b)),
    ("E[x, x ~ Geometric(p)]", {"p": 0.3}, lambda p: (1 - p) / p),
    ("E[x**2, x ~ Binomial(6, p)]", {"p": 0.35}, lambda p: 6 * p * (1 - p) + 36 * p**2),
    ("E[z > 0, z ~ Cauchy(m, b)]", {"m": 0.4, "b": 0.8}, lambda m, b: 0.5 + math.atan(m / b) / math.pi),
    ("E[x**2, p ~ Beta(a, b), x ~ Bernoulli(p)]", {"a": 2.0, "b": 3.0}, lambda a, b: a / (a + b)),
    ("E[z * w, z ~ Normal(mu, 1), w ~ Exponential(r)]", {"mu": 0.5, "r": 2.0}, lambda mu, r: mu / r),
    ("log(mu) + E[z, z ~ Normal(mu, 1)]", {"mu": 2.0}, lambda mu: math.log(mu) + mu),
]


@pytest.mark.parametrize("text, params, value", IDENTITIES, ids=[c[0] for c in IDENTITIES])
def test_identities(text, params, value):
    r = exact(text, params)
    assert r is not None
    names = list(params)
    args = [params[n] for n in names]
    grad = {}
    for i, n in enumerate(names):
        h = 1e-6 * max(1.0, abs(args[i]))
        up, down = list(args), list(args)
        up[i] += h
        down[i] -= h
        grad[n] = (value(*up) - value(*down)) / (2 * h)
    assert r.value == pytest.approx(value(*args), rel=1e-10)
    for n in names:
        assert r.grad[n] == pytest.approx(grad[n], rel=1e-6, abs=1e-8), n


def test_array_parameters_elementwise():
    mu = np.array([0.0, 1.0, -2.0])
    r = exact("E[z**2, z ~ Normal(mu, sigma)]", {"mu": mu, "sigma": 0.5})
    assert isinstance(r.value, np.ndarray) and r.value.shape == (3,)
    np.testing.assert_allclose(r.value, mu**2 + 0.25)
    np.testing.assert_allclose(r.grad["mu"], 2 * mu)  # gradient of the summed value, like estimate()
    assert r.grad["sigma"] == pytest.approx(3 * 2 * 0.5)
    # reductions over axes make arrays unsupported
    assert exact("sum(E[z, z ~ Normal(mu, 1)])", {"mu": mu}) is None
    # ...but are the identity on scalars
    check(exact("sum(E[z, z ~ Normal(mu, 1)])", {"mu": 2.0}), 2.0, {"mu": 1.0})


# -- None where there is no closed form, no finite value or no support ----------------------------


@pytest.mark.parametrize("text, params", [
    ("E[floor(z), z ~ Normal(mu, 1)]", {"mu": 0.3}),
    ("E[round(z), z ~ Normal(mu, 1)]", {"mu": 0.3}),
    ("E[sum(z, axis=-1), z ~ Normal(mu, 1)]", {"mu": np.zeros(2)}),
    ("E[argmax(z), z ~ Normal(mu, 1)]", {"mu": np.zeros(2)}),
    ("E[sum(z), z ~ Categorical(probs=p)]", {"p": np.array([0.2, 0.8])}),
    ("E[z, z ~ Cauchy(mu, 1)]", {"mu": 0.3}),  # no mean: sympy gives nan
    ("E[1/z, z ~ Gamma(a, 1)]", {"a": 0.5}),  # diverges for a <= 1
    ("E[z, z ~ Normal(mu, sigma)]", {"mu": 0.3, "sigma": -1.0}),  # invalid scale
    ("E[y, y ~ Bernoulli(p)]", {"p": 1.5}),  # invalid probability
    ("E[sqrt(z), z ~ Normal(mu, 1)]", {"mu": 0.3}),  # complex on half the line
])
def test_unsupported_returns_none(text, params):
    t0 = time.monotonic()
    assert exact(text, params, timeout=5) is None
    assert time.monotonic() - t0 < 10  # the 5 s limit held (without it some of these run for minutes)


def test_floor_of_a_count_is_the_count():
    check(exact("E[floor(x), x ~ Poisson(r)]", {"r": 0.7}), 0.7, {"r": 1.0})


def test_hard_integral_times_out():
    timeout = 2.0
    text = "E[sigmoid(z) * tanh(z)**3, z ~ Normal(mu, sigma)]"
    t0 = time.monotonic()
    assert exact(text, {"mu": 0.2, "sigma": 0.9}, timeout=timeout) is None
    assert time.monotonic() - t0 < timeout + 5
    t0 = time.monotonic()  # the failure is remembered
    assert exact(text, {"mu": 0.1, "sigma": 1.9}, timeout=timeout) is None
    assert time.monotonic() - t0 < 0.5


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
def test_callers_alarm_is_restored():
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *_: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 120.0)
        assert exact("E[z**4, z ~ Normal(mu, 1)]", {"mu": 1.0}, timeout=60) is not None  # well under 1 s here
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 60.0 < left <= 120.0
        assert signal.getsignal(signal.SIGALRM) is not old and not fired
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        time.sleep(0.2)
        assert fired == [1]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_off_the_main_thread_runs_without_timer():
    out = []
    t = threading.Thread(target=lambda: out.append(exact("E[z**2, z ~ Uniform(0, b)]", {"b": 3.0})))
    t.start()
    t.join(60)
    check(out[0], 3.0, {"b": 2.0})


def test_cache_makes_repeats_cheap():
    text = "E[exp(-z), z ~ Exponential(r)]"
    first = exact(text, {"r": 1.5})
    check(first, 1.5 / 2.5, {"r": 1 / 2.5**2})
    t0 = time.monotonic()
    for r in (0.5, 1.0, 2.0):
        check(exact(text, {"r": r}), r / (r + 1), {"r": 1 / (r + 1) ** 2})
    assert time.monotonic() - t0 < 0.2


def test_invalid_input_raises_like_estimate():
    with pytest.raises(StochgradError):
        exact("E[z**2, z ~ Normal(mu,", {"mu": 1.0})
    with pytest.raises(ValidationError):
        exact("E[z**2, z ~ Normal(mu, sigma)]", {"mu": 1.0})
    with pytest.raises(ValidationError):
        exact("E[z, z ~ Normal(mu, 1)]", {"mu": 1.0, "nu": 2.0})


def test_importable_without_hypothesis_and_sympy_is_lazy():
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "import stochgrad.testing.oracle as o\n"
        "assert 'sympy' not in sys.modules, 'sympy imported eagerly'\n"
        "print(o.exact('E[z, z ~ Exponential(r)]', {'r': 2.0}).value)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == 0.5


# -- the oracle and Monte Carlo agree (checks both) ----------------------------------------------

AGREE = [
    ("E[exp(z), z ~ Normal(mu, s)]", {"mu": 0.3, "s": 0.5}),  # pathwise
    ("E[z > 1, z ~ Normal(mu, s)]", {"mu": 0.3, "s": 1.5}),  # score function through a comparison
    ("E[x >= 3, x ~ Poisson(r)]", {"r": 2.5}),  # score function, counts
    ("E[x**2, z ~ Normal(mu, 1), x ~ Normal(z, s)]", {"mu": 0.5, "s": 1.5}),  # dependent bindings
]


@pytest.mark.parametrize("text, params", AGREE, ids=[c[0] for c in AGREE])
def test_agrees_with_estimate(text, params):
    r = exact(text, params)
    assert r is not None
    est = sg.estimate(text, params, n=200_000, seed=20240601)
    pairs = [("value", r.value, est.value, est.value_stderr)]
    pairs += [(k, r.grad[k], est.grad[k], est.stderr[k]) for k in params]
    for name, x, m, s in pairs:
        assert abs(m - x) <= 6 * s + 1e-9 * (1 + abs(x)), f"{name}: exact {x}, estimate {m} \u00b1 {s}"
