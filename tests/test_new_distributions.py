"""StudentT, HalfNormal, HalfCauchy, InverseGamma and Chi2 against independent references.

* log densities and entropies against ``scipy.stats`` (Hypothesis over the parameters), calling the
  distribution's ``log_prob`` / ``entropy`` directly on both backends;
* KL closed forms against ``scipy.integrate.quad`` of ``p log(p / q)`` (value, and the gradient
  against central differences of the quadrature);
* pathwise gradients of moments against hand-derived closed forms (``sympy`` differentiates them),
  judged by :func:`stochgrad.testing.assert_estimate` (the estimate's own standard errors);
* the plan (pathwise for all of them), the text round trip, the embedded constructors and the errors.

VonMises has its own file, tests/test_vonmises.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as ss
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

import stochgrad as sg
from stochgrad.testing import assert_estimate

N = 200_000
NAMES = ("StudentT", "HalfNormal", "HalfCauchy", "InverseGamma", "Chi2")
pos = st.floats(0.2, 20.0)

#: name -> (parameter strategy, scipy frozen law from the parameters)
LAWS = {
    "StudentT": (st.fixed_dictionaries({"df": st.floats(0.3, 50.0), "loc": st.floats(-5.0, 5.0), "scale": pos}),
                 lambda df, loc, scale: ss.t(df, loc=loc, scale=scale)),
    "HalfNormal": (st.fixed_dictionaries({"scale": pos}), lambda scale: ss.halfnorm(scale=scale)),
    "HalfCauchy": (st.fixed_dictionaries({"scale": pos}), lambda scale: ss.halfcauchy(scale=scale)),
    "InverseGamma": (st.fixed_dictionaries({"concentration": st.floats(0.3, 30.0), "rate": pos}),
                     lambda concentration, rate: ss.invgamma(concentration, scale=rate)),
    "Chi2": (st.fixed_dictionaries({"df": st.floats(0.3, 50.0)}), lambda df: ss.chi2(df)),
}


def _native(B, params):
    return {k: B.asarray(np.array([v], dtype=float)) for k, v in params.items()}  # a sample axis of size 1


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_is_scipy_logpdf(name, backend):
    strategy, scipy_law = LAWS[name]
    B, law = sg.get_backend(backend), sg.DISTRIBUTIONS[name]

    @settings(deadline=None, max_examples=15)
    @given(strategy)
    def check(params):
        ref = scipy_law(**params)
        x = np.asarray(ref.ppf(np.linspace(0.01, 0.99, 25)), dtype=float)
        got = B.to_numpy(law.log_prob(B, _native(B, params), B.asarray(x)))
        np.testing.assert_allclose(got, ref.logpdf(x), rtol=1e-9, atol=1e-10, err_msg=f"{name} {params}")

    check()


@pytest.mark.parametrize("name", NAMES)
def test_entropy_is_scipy_entropy(name, backend):
    strategy, scipy_law = LAWS[name]
    B, law = sg.get_backend(backend), sg.DISTRIBUTIONS[name]

    @settings(deadline=None, max_examples=15)
    @given(strategy)
    def check(params):
        got = B.to_numpy(law.entropy(B, _native(B, params)))
        np.testing.assert_allclose(got, [scipy_law(**params).entropy()], rtol=1e-9, atol=1e-10, err_msg=f"{params}")

    check()


# -- KL closed forms -------------------------------------------------------------------------------

#: (text, parameters, scipy p, scipy q)
KLS = [
    ("KL(HalfNormal(a) || HalfNormal(b))", {"a": 0.7, "b": 1.9}, lambda a, b: (ss.halfnorm(scale=a), ss.halfnorm(scale=b))),
    ("KL(HalfCauchy(a) || HalfCauchy(b))", {"a": 2.5, "b": 0.6}, lambda a, b: (ss.halfcauchy(scale=a), ss.halfcauchy(scale=b))),
    ("KL(InverseGamma(a, b) || InverseGamma(c, d))", {"a": 3.0, "b": 2.0, "c": 1.5, "d": 0.7},
     lambda a, b, c, d: (ss.invgamma(a, scale=b), ss.invgamma(c, scale=d))),
    ("KL(Chi2(a) || Chi2(b))", {"a": 3.0, "b": 5.5}, lambda a, b: (ss.chi2(a), ss.chi2(b))),
    ("KL(Chi2(a) || Gamma(b, c))", {"a": 3.0, "b": 2.0, "c": 0.8}, lambda a, b, c: (ss.chi2(a), ss.gamma(b, scale=1 / c))),
    ("KL(Gamma(b, c) || Chi2(a))", {"a": 3.0, "b": 2.0, "c": 0.8}, lambda a, b, c: (ss.gamma(b, scale=1 / c), ss.chi2(a))),
]


def _kl_quad(make, params):
    p, q = make(**params)
    lo, hi = p.support()
    # in u = CDF space the integrand is bounded and the heavy tails are no trouble
    f = lambda u: (lambda x: p.logpdf(x) - q.logpdf(x))(p.ppf(u))  # noqa: E731
    return integrate.quad(f, 0.0, 1.0, epsabs=1e-12, epsrel=1e-11, limit=400)[0]


@pytest.mark.parametrize(("text", "params", "make"), KLS, ids=[k[0] for k in KLS])
def test_kl_closed_form_matches_quadrature(text, params, make, backend):
    r = sg.estimate(text, params, n=4, backend=backend, seed=0)
    assert "closed form" in str(r.plan)
    assert r.value == pytest.approx(_kl_quad(make, params), rel=1e-7, abs=1e-9)
    for k, x in params.items():
        h = 1e-4 * x
        fd = (_kl_quad(make, {**params, k: x + h}) - _kl_quad(make, {**params, k: x - h})) / (2 * h)
        assert r.grad[k] == pytest.approx(fd, rel=1e-5, abs=1e-7), k


# -- pathwise gradients against closed forms ------------------------------------------------------

df, loc, scale, a, b = sp.symbols("df loc scale a b", positive=True)
#: (text, parameters, closed form of the expectation in the parameters' symbols)
MOMENTS = [
    ("E[z**2, z ~ StudentT(df, loc, scale)]", {"df": 9.0, "loc": 0.5, "scale": 1.5}, scale**2 * df / (df - 2) + loc**2),
    ("E[abs(z), z ~ StudentT(df, 0, scale)]", {"df": 3.5, "scale": 2.0},
     scale * 2 * sp.sqrt(df) * sp.gamma((df + 1) / 2) / (sp.sqrt(sp.pi) * (df - 1) * sp.gamma(df / 2))),
    ("E[z, z ~ StudentT(df, loc, scale)]", {"df": 3.0, "loc": -1.0, "scale": 0.8}, loc),
    ("E[z, z ~ HalfNormal(scale)]", {"scale": 1.3}, scale * sp.sqrt(2 / sp.pi)),
    ("E[z**2, z ~ HalfNormal(scale)]", {"scale": 1.3}, scale**2),
    # log|C| and -log|C| have one law (|C| and 1/|C| do), so E[log z] = log scale
    ("E[log(z), z ~ HalfCauchy(scale)]", {"scale": 2.5}, sp.log(scale)),
    ("E[z, z ~ InverseGamma(a, b)]", {"a": 4.0, "b": 2.0}, b / (a - 1)),
    ("E[z**2, z ~ InverseGamma(a, b)]", {"a": 6.0, "b": 0.7}, b**2 / ((a - 1) * (a - 2))),
    ("E[z, z ~ Chi2(df)]", {"df": 2.5}, df),
    ("E[z**2, z ~ Chi2(df)]", {"df": 0.8}, df * (df + 2)),
]


@pytest.mark.parametrize(("text", "params", "exact"), MOMENTS, ids=[m[0] for m in MOMENTS])
def test_pathwise_moments_and_gradients_match_closed_forms(text, params, exact, backend):
    subs = {sp.Symbol(k, positive=True): v for k, v in params.items()}
    value = float(exact.subs(subs))
    grad = {k: float(sp.diff(exact, sp.Symbol(k, positive=True)).subs(subs)) for k in params}
    r = sg.estimate(text, params, n=N, backend=backend, seed=1)
    assert r.plan.node("z").estimator == "pathwise"
    assert_estimate(r, value=value, grad=grad)


def test_a_wrong_df_gradient_is_rejected(backend):
    """The tolerance has teeth: StudentT's df gradient 10% off fails."""
    text, params, exact = MOMENTS[0]
    subs = {sp.Symbol(k, positive=True): v for k, v in params.items()}
    grad = {k: float(sp.diff(exact, sp.Symbol(k, positive=True)).subs(subs)) for k in params}
    r = sg.estimate(text, params, n=N, backend=backend, seed=1)
    with pytest.raises(AssertionError, match="d/ddf"):
        assert_estimate(r, grad={**grad, "df": 1.1 * grad["df"]})


# -- plans, text, constructors, errors --------------------------------------------------------------

TEXTS = {"StudentT": "StudentT(v, m, s)", "HalfNormal": "HalfNormal(s)", "HalfCauchy": "HalfCauchy(s)",
         "InverseGamma": "InverseGamma(v, s)", "Chi2": "Chi2(v)", "VonMises": "VonMises(m, s)"}


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_the_planner_picks_pathwise(name, backend):
    p = sg.plan(f"E[z**2, z ~ {TEXTS[name]}]", backend=backend)
    assert p.node("z").estimator == "pathwise"
    assert f"z ~ {TEXTS[name]}: pathwise" in str(p)


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_text_round_trip_and_embedded_constructor(name):
    e = sg.parse(f"E[z**2, z ~ {TEXTS[name]}]")
    assert sg.parse(str(e)) == e
    v, m, s, z = sg.symbols("v m s z")
    args = {"StudentT": (v, m, s), "HalfNormal": (s,), "HalfCauchy": (s,), "InverseGamma": (v, s), "Chi2": (v,),
            "VonMises": (m, s)}[name]
    assert sg.E(z**2, z=getattr(sg, name)(*args)) == e


@pytest.mark.parametrize(("text", "params", "bad"), [
    ("E[z, z ~ StudentT(df, 0, 1)]", {"df": -1.0}, "df"),
    ("E[z, z ~ StudentT(3, 0, s)]", {"s": 0.0}, "scale"),
    ("E[z, z ~ HalfNormal(s)]", {"s": -2.0}, "scale"),
    ("E[z, z ~ HalfCauchy(s)]", {"s": 0.0}, "scale"),
    ("E[z, z ~ InverseGamma(a, 1)]", {"a": 0.0}, "concentration"),
    ("E[z, z ~ Chi2(k)]", {"k": -3.0}, "df"),
    ("E[z, z ~ VonMises(0, k)]", {"k": -1.0}, "concentration"),
])
def test_bad_parameters_are_named(text, params, bad, backend):
    with pytest.raises(sg.StochgradError, match=rf"~ .*: parameter '{bad}'( \(given as `\w+`\))? must be > 0"):
        sg.estimate(text, params, n=10, backend=backend, seed=0)


def test_unknown_parameter_names_the_signature():
    with pytest.raises(sg.StochgradError, match=r"StudentT has no parameter 'nu'.*StudentT\(df, loc, scale\)"):
        sg.parse("E[z, z ~ StudentT(nu=3, loc=0, scale=1)]")
