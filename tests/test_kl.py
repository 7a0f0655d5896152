"""KL(p || q) nodes: closed forms against independent numerical integration, Monte Carlo otherwise."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats

import stochgrad as sg
from stochgrad.testing import assert_estimate


def kl_quad(p, q, lo, hi):
    """KL by numerical integration of p log(p / q) (scipy frozen distributions)."""
    return integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), lo, hi, limit=200)[0]


def fd(f, x, h=1e-5):
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize("text, params, reference", [
    ("KL(Normal(a, b) || Normal(c, d))", {"a": 0.5, "b": 2.0, "c": -0.3, "d": 0.7},
     lambda a, b, c, d: kl_quad(stats.norm(a, b), stats.norm(c, d), -40, 40)),
    ("KL(LogNormal(a, b) || LogNormal(c, d))", {"a": 0.2, "b": 0.5, "c": 0.0, "d": 0.8},
     lambda a, b, c, d: kl_quad(stats.lognorm(b, scale=math.exp(a)), stats.lognorm(d, scale=math.exp(c)), 0, 60)),
    ("KL(Exponential(a) || Exponential(b))", {"a": 1.5, "b": 0.4},
     lambda a, b: kl_quad(stats.expon(scale=1 / a), stats.expon(scale=1 / b), 0, 80)),
    ("KL(Gamma(a, b) || Gamma(c, d))", {"a": 2.0, "b": 1.5, "c": 1.2, "d": 0.8},
     lambda a, b, c, d: kl_quad(stats.gamma(a, scale=1 / b), stats.gamma(c, scale=1 / d), 0, 80)),
    ("KL(Poisson(a) || Poisson(b))", {"a": 2.5, "b": 1.1},
     lambda a, b: sum(stats.poisson(a).pmf(k) * (stats.poisson(a).logpmf(k) - stats.poisson(b).logpmf(k))
                      for k in range(200))),
    ("KL(Bernoulli(a) || Bernoulli(b))", {"a": 0.3, "b": 0.6},
     lambda a, b: a * math.log(a / b) + (1 - a) * math.log((1 - a) / (1 - b))),
])
def test_closed_forms(backend, text, params, reference):
    r = sg.estimate(text, params, n=4, backend=backend, seed=0)
    assert r.plan.notes == (f"{sg.parse(text)}: closed form",)
    assert r.value == pytest.approx(reference(**params), rel=1e-7, abs=1e-10)
    for k in params:
        exact = fd(lambda v: reference(**{**params, k: v}), params[k])
        assert r.grad[k] == pytest.approx(exact, rel=1e-5, abs=1e-7), k


def test_categorical_closed_form(backend):
    l, m = np.array([0.1, 0.5, -1.0]), np.array([0.3, -0.2, 0.0])
    p, q = special.softmax(l), special.softmax(m)
    r = sg.estimate("sum(KL(Categorical(logits=l) || Categorical(logits=m)))", {"l": l, "m": m}, n=2,
                    backend=backend, seed=0)
    assert r.value == pytest.approx(float(np.sum(p * np.log(p / q))), rel=1e-12)


def test_monte_carlo_for_other_pairs(backend):
    # KL(Laplace(mu, b) || Normal(0, 1)) = -log(2b) - 1 + log(2 pi)/2 + (mu^2 + 2 b^2)/2
    mu, b = 0.5, 2.0
    r = sg.estimate("KL(Laplace(mu, b) || Normal(0, 1))", {"mu": mu, "b": b}, n=40_000, backend=backend, seed=1)
    assert r.plan.node("_kl0").estimator == "pathwise"
    assert "Monte Carlo" in str(r.plan)
    value = -math.log(2 * b) - 1 + 0.5 * math.log(2 * math.pi) + (mu**2 + 2 * b**2) / 2
    assert_estimate(r, value=value, grad={"mu": mu, "b": -1 / b + 2 * b})


def test_elbo_is_one_expression(backend):
    # ELBO = E[log p(x | z)] - KL(q || p) with a Gaussian toy likelihood log p(x|z) = -(x - z)^2 / 2
    text = "E[-(x - z)**2 / 2, z ~ Normal(mu, s)] - KL(Normal(mu, s) || Normal(0, 1))"
    x, mu, s = 1.2, 0.4, 0.8
    r = sg.estimate(text, {"x": x, "mu": mu, "s": s}, n=40_000, backend=backend, seed=2)
    value = -((x - mu) ** 2 + s**2) / 2 - (-math.log(s) + (s**2 + mu**2) / 2 - 0.5)
    assert_estimate(r, value=value, grad={"mu": (x - mu) - mu, "s": -s + 1 / s - s, "x": -(x - mu)})


def test_kl_with_random_parameters_inside_an_expectation(backend):
    # E_z[KL(N(z, 1) || N(0, 1))] = E[z^2 / 2] = (mu^2 + 1) / 2
    r = sg.estimate("E[KL(Normal(z, 1) || Normal(0, 1)), z ~ Normal(mu, 1)]", {"mu": 0.7}, n=40_000,
                    backend=backend, seed=3)
    assert_estimate(r, value=(0.49 + 1) / 2, grad={"mu": 0.7})


def test_kl_syntax_and_embedded_form():
    mu, s = sg.symbols("mu s")
    e = sg.KL(sg.Normal(mu, s), sg.Normal(0, 1))
    assert e == sg.parse("KL(Normal(mu, s) || Normal(0, 1))") and sg.parse(str(e)) == e
    with pytest.raises(sg.ParseError, match="unexpected"):
        sg.parse("KL(Normal(mu, s), Normal(0, 1))")
    with pytest.raises(sg.ParseError, match=r"unexpected ','; expected '\('"):
        sg.parse("E[KL, KL ~ Normal(0, 1)]")  # KL is a keyword
    with pytest.raises(ValueError, match="'KL' is reserved"):
        sg.symbols("KL")
    with pytest.raises(sg.StochgradError, match=r"KL\(Normal\(mu, s\) \|\| Normal\(0, 1\)\): Normal\(mu, s\): parameter 'scale' \(given as `s`\) must be > 0"):
        sg.estimate(e, {"mu": 0.0, "s": -1.0}, n=2)


@pytest.mark.parametrize("backend", ["autograd", "torch"])
@pytest.mark.parametrize("prior", [0.5, 0.2, 1.0])
def test_bernoulli_kl_to_a_constant_prior(backend: str, prior: float) -> None:
    """A constant distribution is converted once to logits; the KL must still match the definition
    sum_y p(y) log(p(y) / q(y)) written out with numpy."""
    p = np.array([0.1, 0.5, 0.93])
    est = sg.estimate(f"sum(KL(Bernoulli(probs=p) || Bernoulli({prior})))", {"p": p}, n=2, backend=backend, seed=0)
    q = min(prior, 1.0)
    with np.errstate(divide="ignore"):
        expected = np.sum(p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))) if q < 1 else np.inf
    if np.isfinite(expected):
        assert est.value == pytest.approx(expected, rel=1e-10)
    else:
        assert est.value == np.inf  # q = 1 gives y = 0 no mass, which p gives mass: exactly +inf


@settings(max_examples=25)
@given(law=st.sampled_from(["Normal", "LogNormal"]), a=st.floats(-3, 3), b=st.floats(0.05, 5),
       c=st.one_of(st.just(0.0), st.floats(-3, 3)), d=st.one_of(st.just(1.0), st.floats(0.05, 5)),
       constant=st.sampled_from(["q", "p", "q computed"]))  # the standard prior (0, 1) is a branch of its own
def test_kl_with_constant_parameters_equals_the_parameter_form(law, a, b, c, d, constant):
    """Constant parameters (Python floats inside the program, folded once) give the value and the
    gradients of the same KL written with parameters, on both backends, in estimate and compile;
    the parameter form itself is checked against numerical integration above."""
    import torch

    full = f"KL({law}(a, b) || {law}(c, d))"
    if constant == "q":
        text, given = f"KL({law}(a, b) || {law}({c!r}, {d!r}))", {"a": a, "b": b}
    elif constant == "p":
        text, given = f"KL({law}({a!r}, {b!r}) || {law}(c, d))", {"c": c, "d": d}
    else:  # a constant the program folds: d = 2 * (d / 2)
        text, given = f"KL({law}(a, b) || {law}({c!r} + 0, 2 * {d / 2!r}))", {"a": a, "b": b}
    ref = sg.estimate(full, {"a": a, "b": b, "c": c, "d": d}, n=2, backend="autograd", seed=0)
    for backend in ("autograd", "torch"):
        r = sg.estimate(text, given, n=2, backend=backend, seed=0)
        assert r.value == pytest.approx(ref.value, rel=1e-12, abs=1e-12)
        for k in given:
            assert r.grad[k] == pytest.approx(ref.grad[k], rel=1e-12, abs=1e-12)
    f = sg.compile(text, n=2, backend="torch", seed=0)
    leaves = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in given.items()}
    out = f(**leaves)
    grads = torch.autograd.grad(out, list(leaves.values()))
    assert out.item() == pytest.approx(ref.value, rel=1e-12, abs=1e-12)
    for k, g in zip(leaves, grads):
        assert g.item() == pytest.approx(ref.grad[k], rel=1e-12, abs=1e-12)
