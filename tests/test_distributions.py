"""Every built-in distribution against an independent reference (scipy).

For each distribution we estimate E[z], E[z**2] and a nonlinear cost with
stochgrad and compare the value and the gradient with respect to every
parameter with exact numbers that come from scipy only:

* moments from ``scipy.stats`` (``frozen.mean()``, ``frozen.var()``: closed forms inside scipy),
* other expectations from ``frozen.expect(f)`` (adaptive quadrature, run to
  ~1e-10 accuracy),
* gradients by central finite differences of those scipy values.

scipy's von Mises moments integrate slowly (about 3 s a call), so its reference takes them by
``scipy.integrate.quad`` of scipy's own density over one period (:class:`VonMisesReference`).

scipy has no Kumaraswamy distribution; its reference is written here from the
density ``a*b*z**(a-1)*(1-z**a)**(b-1)``: moments by the identity
``E[z**k] = b * B(1 + k/a, b)`` and other expectations by ``scipy.integrate.quad``.

Monte Carlo results are always judged by :func:`stochgrad.testing.assert_estimate`
(false-failure rate 1e-6 from the estimate's own standard errors), never by a
hand-picked tolerance.  Seeds are fixed, so a run is deterministic.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import scipy.special
import scipy.stats as ss
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import integrate

import stochgrad as sg
from stochgrad.testing import assert_estimate

N_PATHWISE = 200_000  # large enough that a gradient 10% off fails (unless the gradient is ~0)
N_SCORE = 400_000  # the score-function estimator is noisier
SEED = 0
QUAD = {"epsabs": 1e-12, "epsrel": 1e-10, "limit": 200}  # ample: finite-difference error <= ~1e-7
EXAMPLES = settings(
    max_examples=5,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# numpy versions of the DSL costs, for the scipy side
COSTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sin(z)": np.sin,
    "cos(z)": np.cos,
    "sin(4*z)": lambda z: np.sin(4 * z),
    "exp(-z)": lambda z: np.exp(-z),
    "exp(-z**2)": lambda z: np.exp(-z * z),
    "tanh(z)": np.tanh,
    "sigmoid(z)": scipy.special.expit,
}


class VonMisesReference:
    """scipy's von Mises, with its mean and variance by quadrature of scipy's density over
    ``(loc - pi, loc + pi)`` (scipy's own ``mean``/``var`` integrate generically, about 3 s a call)."""

    def __init__(self, concentration: float, loc: float) -> None:
        self.d, self.loc = ss.vonmises(concentration, loc=loc), loc

    def __getattr__(self, name: str) -> Any:  # pdf, logpdf, ppf, expect: scipy's
        return getattr(self.d, name)

    def _moment(self, k: int) -> float:
        lo, hi = self.loc - math.pi, self.loc + math.pi
        return integrate.quad(lambda z: z**k * self.d.pdf(z), lo, hi, **QUAD)[0]

    def mean(self) -> float:
        return self._moment(1)

    def var(self) -> float:
        return self._moment(2) - self._moment(1) ** 2


class KumaraswamyReference:
    """The methods of a scipy frozen distribution that these tests use, for Kumaraswamy(a, b)."""

    def __init__(self, a: float, b: float) -> None:
        self.a, self.b = a, b

    def pdf(self, z: Any) -> Any:
        a, b = self.a, self.b
        return a * b * z ** (a - 1) * (1 - z**a) ** (b - 1)

    def logpdf(self, z: Any) -> Any:
        return np.log(self.pdf(z))

    def ppf(self, q: Any) -> Any:  # the CDF is 1 - (1 - z**a)**b
        return (1 - (1 - q) ** (1 / self.b)) ** (1 / self.a)

    def moment(self, k: int) -> float:
        return self.b * scipy.special.beta(1 + k / self.a, self.b)

    def mean(self) -> float:
        return self.moment(1)

    def var(self) -> float:
        return self.moment(2) - self.moment(1) ** 2

    def expect(self, f: Callable[[Any], Any], **quad: Any) -> float:
        # For a < 1 or b < 1 the density is infinite at an end point and quad warns that it cannot
        # reach 1e-10; it still agrees with the same integral taken in u = CDF(z) space to ~1e-13.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", integrate.IntegrationWarning)
            return integrate.quad(lambda z: f(z) * self.pdf(z), 0.0, 1.0, **quad)[0]


def loc_scale(scale: tuple[float, float] = (0.3, 2.0)) -> st.SearchStrategy[dict[str, float]]:
    return st.fixed_dictionaries({"loc": st.floats(-2.0, 2.0), "scale": st.floats(*scale)})


@dataclass(frozen=True)
class Case:
    dist: str  # DSL text; its arguments are the parameter names, in order
    params: st.SearchStrategy[dict[str, float]]  # parameters in a range with finite, moderate variance
    scipy: Callable[..., Any]  # keyword parameters -> scipy frozen distribution (or a stand-in)
    costs: tuple[str, ...]  # costs whose expectation exists
    score_points: tuple[dict[str, float], ...]  # a few parameter values for the score-function check
    score_cost: str = "z**2"
    score_valid: bool = True  # False where the support moves with the parameters

    @property
    def name(self) -> str:
        return self.dist.split("(")[0]


CASES = [
    Case("Normal(loc, scale)", loc_scale(),
         lambda loc, scale: ss.norm(loc=loc, scale=scale),
         ("z", "z**2", "sin(z)"),
         ({"loc": 0.5, "scale": 1.0}, {"loc": -1.5, "scale": 0.6})),
    # E[z**2] has a heavy right tail for large scale: keep scale <= 0.6
    Case("LogNormal(loc, scale)", loc_scale((0.1, 0.6)),
         lambda loc, scale: ss.lognorm(s=scale, scale=np.exp(loc)),
         ("z", "z**2", "exp(-z)"),
         ({"loc": 0.2, "scale": 0.3}, {"loc": -0.5, "scale": 0.5})),
    Case("Exponential(rate)", st.fixed_dictionaries({"rate": st.floats(0.3, 3.0)}),
         lambda rate: ss.expon(scale=1 / rate),
         ("z", "z**2", "sin(z)"),
         ({"rate": 0.7}, {"rate": 2.0})),
    Case("Weibull(scale, concentration)",
         st.fixed_dictionaries({"scale": st.floats(0.5, 2.0), "concentration": st.floats(0.8, 4.0)}),
         lambda scale, concentration: ss.weibull_min(c=concentration, scale=scale),
         ("z", "z**2", "exp(-z)"),
         ({"scale": 1.2, "concentration": 1.5}, {"scale": 0.7, "concentration": 3.0})),
    Case("Uniform(low, high)",
         st.builds(lambda low, width: {"low": low, "high": low + width}, st.floats(-2.0, 2.0), st.floats(0.2, 3.0)),
         lambda low, high: ss.uniform(loc=low, scale=high - low),
         ("z", "z**2", "exp(-z**2)"),
         ({"low": -0.5, "high": 1.5}, {"low": 1.0, "high": 1.8}),
         # The support of Uniform moves with its parameters, so the score-function identity
         # grad E[f] = E[f grad log q] does not hold (the boundary terms are missing): the plan
         # flags it biased (test_uniform_score_function_is_flagged_biased) and the score test skips it.
         score_valid=False),
    Case("Laplace(loc, scale)", loc_scale(),
         lambda loc, scale: ss.laplace(loc=loc, scale=scale),
         ("z", "z**2", "cos(z)"),
         ({"loc": 0.5, "scale": 1.0}, {"loc": -1.0, "scale": 0.5})),
    Case("Gumbel(loc, scale)", loc_scale(),
         lambda loc, scale: ss.gumbel_r(loc=loc, scale=scale),
         ("z", "z**2", "sigmoid(z)"),
         ({"loc": 0.5, "scale": 1.0}, {"loc": -1.0, "scale": 0.5})),
    Case("Logistic(loc, scale)", loc_scale(),
         lambda loc, scale: ss.logistic(loc=loc, scale=scale),
         ("z", "z**2", "tanh(z)"),
         ({"loc": 0.5, "scale": 1.0}, {"loc": -1.0, "scale": 0.5})),
    # Cauchy has no mean and no variance: E[z] and E[z**2] do not exist, so three bounded costs
    # stand in for them (and the score check uses a bounded cost too).
    Case("Cauchy(loc, scale)", loc_scale(),
         lambda loc, scale: ss.cauchy(loc=loc, scale=scale),
         ("tanh(z)", "sigmoid(z)", "exp(-z**2)"),
         ({"loc": 0.5, "scale": 1.0}, {"loc": -1.0, "scale": 0.5}),
         score_cost="tanh(z)"),
    Case("Kumaraswamy(a, b)", st.fixed_dictionaries({"a": st.floats(0.5, 5.0), "b": st.floats(0.5, 5.0)}),
         KumaraswamyReference,
         ("z", "z**2", "sin(4*z)"),
         ({"a": 2.0, "b": 3.0}, {"a": 0.7, "b": 1.5})),
    # Gamma and Beta are pathwise through implicit reparameterization of the gamma draw
    Case("Gamma(concentration, rate)",
         st.fixed_dictionaries({"concentration": st.floats(0.5, 5.0), "rate": st.floats(0.5, 3.0)}),
         lambda concentration, rate: ss.gamma(a=concentration, scale=1 / rate),
         ("z", "z**2", "exp(-z)"),
         ({"concentration": 2.0, "rate": 1.5}, {"concentration": 0.7, "rate": 0.8})),
    Case("Beta(a, b)", st.fixed_dictionaries({"a": st.floats(0.5, 5.0), "b": st.floats(0.5, 5.0)}),
         lambda a, b: ss.beta(a=a, b=b),
         ("z", "z**2", "sin(4*z)"),
         ({"a": 2.0, "b": 3.0}, {"a": 0.7, "b": 1.5})),
    # heavytails.py, gammafamily.py, vonmises.py (more in tests/test_new_distributions.py, tests/test_vonmises.py);
    # df >= 8 (StudentT: the df gradient of E[z**2] has a light enough tail) and concentration > 4
    # (InverseGamma) keep E[z**2] of finite variance
    Case("StudentT(df, loc, scale)",
         st.fixed_dictionaries({"df": st.floats(8.0, 14.0), "loc": st.floats(-2.0, 2.0), "scale": st.floats(0.3, 2.0)}),
         lambda df, loc, scale: ss.t(df, loc=loc, scale=scale),
         ("z", "z**2", "tanh(z)"),
         ({"df": 10.0, "loc": 0.5, "scale": 1.0}, {"df": 14.0, "loc": -1.0, "scale": 0.5})),
    Case("HalfNormal(scale)", st.fixed_dictionaries({"scale": st.floats(0.3, 2.0)}),
         lambda scale: ss.halfnorm(scale=scale),
         ("z", "z**2", "sin(z)"),
         ({"scale": 0.7}, {"scale": 1.5})),
    Case("HalfCauchy(scale)", st.fixed_dictionaries({"scale": st.floats(0.3, 2.0)}),  # no mean: bounded costs
         lambda scale: ss.halfcauchy(scale=scale),
         ("tanh(z)", "sigmoid(z)", "exp(-z**2)"),
         ({"scale": 0.7}, {"scale": 1.5}),
         score_cost="tanh(z)"),
    Case("InverseGamma(concentration, rate)",
         st.fixed_dictionaries({"concentration": st.floats(4.5, 8.0), "rate": st.floats(0.5, 3.0)}),
         lambda concentration, rate: ss.invgamma(concentration, scale=rate),
         ("z", "z**2", "exp(-z)"),
         ({"concentration": 5.0, "rate": 2.0}, {"concentration": 6.5, "rate": 0.8})),
    Case("Chi2(df)", st.fixed_dictionaries({"df": st.floats(1.0, 8.0)}),
         lambda df: ss.chi2(df),
         ("z", "z**2", "exp(-z)"),
         ({"df": 1.5}, {"df": 4.0})),
    # samples in (loc - pi, loc + pi), as scipy's vonmises; that interval moves with loc (no score check)
    Case("VonMises(loc, concentration)",
         st.fixed_dictionaries({"loc": st.floats(-2.0, 2.0), "concentration": st.floats(0.2, 30.0)}),
         lambda loc, concentration: VonMisesReference(concentration, loc),
         ("z", "z**2", "cos(z)"),
         ({"loc": 0.5, "concentration": 2.0}, {"loc": -1.0, "concentration": 15.0}),
         score_valid=False),
]
SCALAR_CONTINUOUS = sorted(n for n, d in sg.DISTRIBUTIONS.items() if not d.discrete and not d.event_rank)
assert sorted(c.name for c in CASES) == SCALAR_CONTINUOUS, "every scalar continuous distribution needs a case"


# -- the scipy side ---------------------------------------------------------------------------


def reference_value(case: Case, cost: str, params: Mapping[str, float]) -> float:
    """E[cost(z)] for z ~ case.dist(**params), from scipy alone."""
    d = case.scipy(**params)
    # mean() and var() rather than moment(k): scipy's moment() divides by loc, and returns nan
    # for tiny loc such as 1e-200 (a value Hypothesis likes to try)
    if cost == "z":
        return float(d.mean())
    if cost == "z**2":
        return float(d.var() + d.mean() ** 2)
    return float(d.expect(COSTS[cost], **QUAD))


def reference(case: Case, cost: str, params: Mapping[str, float]) -> tuple[float, dict[str, float]]:
    """The exact value and its gradient (central differences with relative step 1e-5)."""
    params = dict(params)
    grad = {}
    for k, x in params.items():
        h = 1e-5 * max(1.0, abs(x))
        up = reference_value(case, cost, {**params, k: x + h})
        down = reference_value(case, cost, {**params, k: x - h})
        grad[k] = (up - down) / (2 * h)
    return reference_value(case, cost, params), grad


def run(case: Case, cost: str, params: Mapping[str, float], backend: str, **kw: Any) -> sg.Estimate:
    return sg.estimate(f"E[{cost}, z ~ {case.dist}]", dict(params), backend=backend, seed=SEED, **kw)


# -- pathwise (the planner's default for every built-in distribution) --------------------------

PATHWISE = [pytest.param(case, cost, id=f"{case.name}-{cost}") for case in CASES for cost in case.costs]


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # tanh'/exp of a far Cauchy/Gumbel tail: 0
@pytest.mark.parametrize(("case", "cost"), PATHWISE)
@EXAMPLES
@given(data=st.data())
def test_value_and_gradient_match_scipy(case: Case, cost: str, backend: str, data: st.DataObject) -> None:
    params = data.draw(case.params, label="params")
    value, grad = reference(case, cost, params)
    result = run(case, cost, params, backend, n=N_PATHWISE)
    assert result.plan.node("z").estimator == "pathwise"
    assert set(result.grad) == set(params)
    assert_estimate(result, value=value, grad=grad)


# -- the score-function estimator: exercises log_prob ------------------------------------------

SCORE = [
    pytest.param(case, point, id=f"{case.name}-{i}")
    for case in CASES
    if case.score_valid
    for i, point in enumerate(case.score_points)
]


@pytest.mark.parametrize(("case", "params"), SCORE)
def test_score_function_gradient_matches_scipy(case: Case, params: dict[str, float], backend: str) -> None:
    """The score-function gradient is E[f(z) grad log q(z)]: right only if log_prob is the true log density."""
    value, grad = reference(case, case.score_cost, params)
    result = run(case, case.score_cost, params, backend, n=N_SCORE, estimators={"z": "score"})
    assert result.plan.node("z").estimator == "score"
    assert_estimate(result, value=value, grad=grad)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_log_prob_is_scipy_logpdf(case: Case, backend: str) -> None:
    """log_prob, evaluated directly at quantiles 0.001 .. 0.999, equals scipy's log density
    (a deterministic check, so it also covers Uniform, whose score gradient cannot)."""
    B = sg.get_backend(backend)
    q = np.linspace(0.001, 0.999, 41)
    for params in case.score_points:
        ref = case.scipy(**params)
        x = np.asarray(ref.ppf(q), dtype=float)
        p = {k: B.asarray(np.array([v])) for k, v in params.items()}  # leading sample axis of size 1
        got = B.to_numpy(sg.DISTRIBUTIONS[case.name].log_prob(B, p, B.asarray(x)))
        np.testing.assert_allclose(got, ref.logpdf(x), rtol=1e-9, atol=1e-12, err_msg=f"{case.dist} at {params}")


# -- the tolerance has teeth ---------------------------------------------------------------------


def test_wrong_exact_gradient_is_rejected(backend: str) -> None:
    """Normal E[z**2] = loc**2 + scale**2: the true gradient passes, one 10% off fails."""
    case = CASES[0]
    params = {"loc": 1.5, "scale": 1.0}
    value, grad = reference(case, "z**2", params)
    assert grad == pytest.approx({"loc": 3.0, "scale": 2.0}, rel=1e-8)  # the finite differences are right
    result = run(case, "z**2", params, backend, n=N_PATHWISE)
    assert_estimate(result, value=value, grad=grad)
    for k in grad:
        with pytest.raises(AssertionError, match=f"d/d{k}"):
            assert_estimate(result, value=value, grad={**grad, k: 1.1 * grad[k]})
    with pytest.raises(AssertionError, match="value"):
        assert_estimate(result, value=1.1 * value, grad=grad)


def test_kumaraswamy_score_function_is_finite_for_small_b(backend: str) -> None:
    """Regression: Kumaraswamy(1, 0.3)'s inverse CDF rounds to exactly 1.0 whenever 1 - u < 2**(-54 * b)
    (about 1 draw in 75 000 here), where the log density is +inf; samples are now kept inside (0, 1).
    The planner picks the score function by itself for a non-differentiable cost such as z > 0.5."""
    result = sg.estimate("E[z > 0.5, z ~ Kumaraswamy(a, b)]", {"a": 1.0, "b": 0.3}, n=N_SCORE, backend=backend, seed=SEED)

    def survival(a: float, b: float) -> float:  # P(z > 0.5) = (1 - 0.5**a)**b from the CDF 1 - (1 - z**a)**b
        return (1 - 0.5**a) ** b

    h = 1e-5
    grad = {"a": (survival(1 + h, 0.3) - survival(1 - h, 0.3)) / (2 * h),
            "b": (survival(1, 0.3 + h) - survival(1, 0.3 - h)) / (2 * h)}
    assert_estimate(result, value=survival(1.0, 0.3), grad=grad)


def test_uniform_score_function_is_flagged_biased() -> None:
    for plan in (sg.plan("E[z > 0.5, z ~ Uniform(low, high)]"), sg.plan("E[z, z ~ Uniform(low, high)]", estimators={"z": "score"})):
        node = plan.node("z")
        assert node.estimator == "score" and node.biased
        assert "Uniform's support depends on its parameters" in node.reason


def test_uniform_with_a_comparison_warns_that_no_unbiased_estimator_applies(backend: str) -> None:
    with pytest.warns(sg.BiasWarning, match=r"no unbiased estimator applies to z ~ Uniform\(a, b\): score"):
        sg.estimate("E[z > 1, z ~ Uniform(a, b)]", {"a": -0.5, "b": 2.0}, n=100, backend=backend, seed=0)


# -- parameter constraints: the scalar fast path agrees with the numpy test ---------------------------
from hypothesis import given, strategies as st  # noqa: E402

from stochgrad.distributions import DISTRIBUTIONS, Constraint  # noqa: E402

_SCALAR_CONSTRAINTS = sorted({p.constraint for d in DISTRIBUTIONS.values() for p in d.params
                              if p.constraint.scalar is not None}, key=lambda c: c.text)


def test_every_scalar_constraint_is_covered():
    assert {c.text for c in _SCALAR_CONSTRAINTS} == {"finite", "> 0 and finite", "in [0, 1]", "a non-negative integer",
                                                     "> 0 and at most 1e+18 (the samplers' range)"}


_EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, 2.5, 3.0, 1e-320, -1e-320, 1e308, math.inf, -math.inf, math.nan, 1 - 1e-16, 1 + 2e-16,
          1e18, math.nextafter(1e18, math.inf)]


@pytest.mark.parametrize("constraint", _SCALAR_CONSTRAINTS, ids=lambda c: c.text)
@given(x=st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(_EDGES) | st.integers(-3, 3).map(float))
def test_scalar_constraint_agrees_with_numpy(constraint: Constraint, x: float):
    assert constraint.scalar(x) == bool(np.all(constraint.holds(np.asarray([x]))))
