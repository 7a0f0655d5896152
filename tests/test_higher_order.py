"""Derivative orders through implicit reparameterization (Gamma, Beta, Dirichlet).

The implicit gradient ``dz/da = -(dF/da) / p(z; a)`` is a first derivative only (``dF/da`` of the
regularized incomplete gamma function has no closed form to differentiate again), so a second
derivative through a pathwise Gamma, Beta or Dirichlet node must raise a PlanError naming the node,
its distribution and the score estimator -- never torch's NotImplementedError, a TypeError from
inside autograd, or a silently wrong number -- while first derivatives stay what they were and the
score function gives the closed-form second derivative.
"""

import math

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings, strategies as st
from scipy import special

import stochgrad as sg
from conftest import grad_of
from stochgrad.testing import assert_estimate, assert_within_stderr

# E[z**2] in closed form for each family, by hand (moments of Gamma / Beta / Dirichlet), as a function of x
_x = sp.Symbol("x", positive=True)
_C = (1.0, 2.5)  # Dirichlet(x * c)
CASES = {
    "Gamma": ("E[z**2, z ~ Gamma(x, 2)]", {}, _x * (_x + 1) / 4),
    "Beta": ("E[z**2, z ~ Beta(x, 2)]", {}, _x * (_x + 1) / ((_x + 2) * (_x + 3))),
    "Dirichlet": ("E[sum(w * z**2), z ~ Dirichlet(x * c)]", {"c": np.array(_C), "w": np.array([1.0, 0.0])},
                  (_C[0] * _x) * (_C[0] * _x + 1) / (sum(_C) * _x * (sum(_C) * _x + 1))),
}
X0 = 1.5


def _exact(family, order):
    return float(sp.diff(CASES[family][2], _x, order).subs(_x, X0))


def _objective(family, backend, n, seed, estimator="pathwise"):
    text, extra, _ = CASES[family]
    f = sg.compile(text, backend=backend, n=n, seed=seed, estimators={"z": estimator})
    if backend == "torch":
        consts = {k: torch.tensor(v, dtype=torch.float64) for k, v in extra.items()}
        return lambda x: f(x=x, **consts)
    return lambda x: f(x=x, **extra)


def _second_derivative(family, backend, n, seed, estimator):
    """One call's first and second derivative in x (fresh noise per call)."""
    f = _objective(family, backend, n, seed, estimator)
    if backend == "torch":
        x = torch.tensor(X0, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(f(x), x, create_graph=True)
        (h,) = torch.autograd.grad(g, x)
        return g.item(), h.item()
    return float(grad_of(backend)(f)(X0)), float(grad_of(backend)(grad_of(backend)(f))(X0))


@pytest.mark.parametrize("family", sorted(CASES))
def test_second_derivative_through_implicit_reparameterization_is_refused_by_name(backend, family):
    text, _, _ = CASES[family]
    where = f"z ~ {text.split(' ~ ')[1].rstrip(']')}"
    pattern = (rf"^{where.replace('(', r'[(]').replace(')', r'[)]').replace('*', r'[*]')}: no second derivative"
               rf" through its pathwise gradient: {family} is sampled by implicit reparameterization.*"
               r"estimators=\{'z': 'score'\}")
    with pytest.raises(sg.PlanError, match=pattern):
        _second_derivative(family, backend, 64, 0, "pathwise")


@pytest.mark.parametrize("family", sorted(CASES))
def test_first_derivative_through_the_guard_matches_the_closed_form(backend, family):
    f = _objective(family, backend, 20_000, 1)
    if backend == "torch":
        grads = []
        for _ in range(10):
            x = torch.tensor(X0, dtype=torch.float64, requires_grad=True)
            (g,) = torch.autograd.grad(f(x), x, create_graph=True)  # a graph for more: still fine
            grads.append(g.item())
    else:
        grads = [float(grad_of(backend)(f)(X0)) for _ in range(10)]
    assert_within_stderr(np.mean(grads), _exact(family, 1), np.std(grads, ddof=1) / math.sqrt(len(grads)))


@pytest.mark.parametrize("family", sorted(CASES))
def test_score_estimator_gives_the_closed_form_second_derivative(backend, family):
    calls = [_second_derivative(family, backend, 20_000, 100 + i, "score") for i in range(12)]
    g, h = np.mean(calls, axis=0)
    se_g, se_h = np.std(calls, axis=0, ddof=1) / math.sqrt(len(calls))
    exact_h = _exact(family, 2)
    assert se_h < abs(exact_h) / 3  # precise enough that a zero or sign-flipped term would fail
    assert_within_stderr([g, h], [_exact(family, 1), exact_h], [se_g, se_h], name=f"{family} score")


def test_second_derivative_in_other_parameters_still_works(backend):
    # z = G / rate with a constant shape: d^2/drate^2 E[z] = d^2/drate^2 (3 / rate) = 6 / rate^3, no dz/da needed
    f = sg.compile("E[z, z ~ Gamma(3, r)]", backend=backend, n=50_000, seed=3)
    if backend == "torch":
        r = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(f(r=r), r, create_graph=True)
        (h,) = torch.autograd.grad(g, r)
        h = h.item()
    else:
        h = float(grad_of(backend)(grad_of(backend)(lambda r: f(r=r)))(2.0))
    # pathwise: d^2/dr^2 (G / r) = 2 G / r^3 per sample, mean 2 * 3 / 8; standard error sqrt(3) * 2 / 8 / sqrt(n)
    assert_within_stderr(h, 6 / 8, 2 * math.sqrt(3) / 8 / math.sqrt(50_000))


# -- the first derivative is unchanged --------------------------------------------------------------

# sg.estimate(text, params, n=3000, seed=5) with the code before the guard (float64; values, then
# gradients in sorted parameter order), under the noise hash of (seed, call, node, stream, block):
# the guard must change no bit of them
BEFORE = {
    ("autograd", "E[z**2, z ~ Gamma(a, r)]"): [7.4079472023013135, 7.063149894122033, -18.51986800575328],
    ("autograd", "E[z**3, z ~ Beta(a, b)]"): [0.037662213358213584, 0.07291164406768665, -0.028763310792910744],
    ("autograd", "E[z, z ~ Gamma(a, 1)]"): [0.0007180616398889555, 0.993886961514166],
}
PARAMS = {"E[z**2, z ~ Gamma(a, r)]": {"a": 1.7, "r": 0.8}, "E[z**3, z ~ Beta(a, b)]": {"a": 0.6, "b": 2.5},
          "E[z, z ~ Gamma(a, 1)]": {"a": 1e-3}}


@pytest.mark.parametrize("key", sorted(BEFORE))
def test_first_derivatives_are_bit_for_bit_those_before(key):
    backend, text = key
    r = sg.estimate(text, PARAMS[text], n=3000, backend=backend, seed=5)
    got = [float(np.sum(r.value))] + [float(r.grad[k]) for k in sorted(r.grad)]
    assert got == pytest.approx(BEFORE[key], rel=1e-13, abs=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch_implicit_gradient_is_torchs_own(dtype):
    """The guarded draw's gradient is exactly the one torch._standard_gamma has, on the same draws."""
    B = sg.get_backend("torch", dtype=dtype)
    alpha = torch.tensor([0.01, 0.3, 1.0, 4.0, 50.0], dtype=dtype).repeat(400).requires_grad_(True)
    ref = torch._standard_gamma(alpha, generator=torch.Generator().manual_seed(7))
    (want,) = torch.autograd.grad(ref.clamp(min=torch.finfo(dtype).tiny).sum(), alpha)
    z = B.noise("gamma", torch.Generator().manual_seed(7), tuple(alpha.shape), alpha)
    assert not z.requires_grad and torch.equal(z, ref.detach().clamp(min=torch.finfo(dtype).tiny))
    (got,) = torch.autograd.grad(B.implicit_gamma(alpha, z, "refused").sum(), alpha)
    assert torch.equal(got, want)


@settings(max_examples=15)
@given(a=st.floats(0.2, 30.0), u=st.floats(0.02, 0.98), backend=st.sampled_from(["autograd", "torch"]))
def test_implicit_gradient_is_the_derivative_of_the_inverse_cdf(a, u, backend):
    """dz/da at fixed u = F(z; a), against a central difference of scipy's gammaincinv."""
    z0 = float(special.gammaincinv(a, u))
    h = 1e-5 * a
    want = (special.gammaincinv(a + h, u) - special.gammaincinv(a - h, u)) / (2 * h)
    B = sg.get_backend(backend)
    if backend == "torch":
        alpha = torch.tensor([a], dtype=torch.float64, requires_grad=True)
        (got,) = torch.autograd.grad(B.implicit_gamma(alpha, torch.tensor([z0], dtype=torch.float64), "x").sum(), alpha)
        got = got.item()
    else:
        got = float(grad_of(backend)(lambda al: B.implicit_gamma(al, np.array([z0]), "x").sum())(np.array([a]))[0])
    # torch's own kernel (_standard_gamma_grad, a rational/asymptotic approximation) is accurate to
    # about 3e-4 relative on this domain (measured: max 3.1e-4 on a 150 x 150 grid of (a, u), median 2e-5);
    # the autograd backend's series is held to 1e-4.  A 1% error still fails either way.
    assert got == pytest.approx(want, rel=1e-3 if backend == "torch" else 1e-4, abs=1e-9)


def test_estimate_still_gives_unbiased_first_derivatives(backend):
    # E[z**2] = a (a + 1) / r**2 for z ~ Gamma(a, r)
    r = sg.estimate("E[z**2, z ~ Gamma(a, r)]", {"a": 1.7, "r": 0.8}, n=40_000, backend=backend, seed=9)
    assert_estimate(r, value=1.7 * 2.7 / 0.64, grad={"a": 4.4 / 0.64, "r": -2 * 1.7 * 2.7 / 0.512})


@pytest.mark.parametrize("family", sorted(CASES))
def test_the_plan_states_the_orders_of_an_implicit_pathwise_node(family):
    text = CASES[family][0]
    node = sg.plan(text).node("z")
    assert node.estimator == "pathwise"
    assert node.reason.endswith("; derivatives up to order 1 (implicit reparameterization; 'score' has every order)")
    assert "order" not in sg.plan(text, estimators={"z": "score"}).node("z").reason
    assert "order" not in sg.plan("E[z**2, z ~ Normal(x, 1)]").node("z").reason  # every order: nothing said
