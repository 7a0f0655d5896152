"""Numerical-safety sweep: extreme but valid parameters give finite estimates.

For every distribution and every estimator that applies to it, on both backends, the
estimate at extreme parameters (probabilities at and within 1e-7 of 0 and 1, scales, rates
and concentrations from 1e-6 to 1e6, locations at +-1e6, logits at +-50, temperatures from
0.01 to 10) must have a finite value, value standard error, gradient and gradient standard
error.  Costs are chosen so that every sample's cost is finite at these parameters (bounded
functions such as ``tanh(z)``, ``sigmoid(z)``, ``exp(-z**2)``, or ``z`` on a bounded support).

Each combination is its own test, named ``<Distribution>-<parameters>-<estimator>-<backend>``.
The sweep first found 145 non-finite combinations (LogNormal and Weibull samples leaving the
float range, Kumaraswamy's log density at a clipped sample, autograd's quotient gradient for
Beta/Dirichlet at tiny concentrations, the magic box of an infinite log density); all are fixed
and now pass.

Inputs that violate a distribution's declared constraint are not part of the sweep; a few
boundary cases check that they raise :class:`stochgrad.StochgradError` instead.
"""

from __future__ import annotations

import numpy as np
import pytest

import stochgrad as sg

N = 256
SEED = 0
BACKENDS = ("autograd", "torch")

# -- parameter grids: (label used in the test id, value) ---------------------------------------

SCALES = [("1e-6", 1e-6), ("1e-3", 1e-3), ("1", 1.0), ("1e3", 1e3), ("1e6", 1e6)]
LOCS = [("-1e6", -1e6), ("0", 0.0), ("1e6", 1e6)]
PROBS = [("0", 0.0), ("1e-7", 1e-7), ("0.5", 0.5), ("1-1e-7", 1.0 - 1e-7), ("1", 1.0)]
LOGITS = [("-50", -50.0), ("0", 0.0), ("50", 50.0)]
TEMPERATURES = ["0.01", "0.1", "1", "10"]

CONTINUOUS_ESTIMATORS = ("pathwise", "score", "score:baseline=none")
RELAXABLE_ESTIMATORS = (
    ("enumerate", "score", "score:baseline=none", "straight_through")
    + tuple(f"relaxed:temperature={t}" for t in TEMPERATURES)
    + tuple(f"straight_through_gumbel:temperature={t}" for t in TEMPERATURES)
)
COUNT_ESTIMATORS = ("score", "score:baseline=none")  # Poisson, Geometric: infinite support

W3 = np.array([1.0, -2.0, 0.5])  # weights of a 3-category cost sum(w * y)


def _grid(dist, text, grids, estimators):
    """Cases (id, text, params, estimator) for every combination of the named grids."""
    names = list(grids)
    points = [[]]
    for name in names:
        points = [pt + [(name, label, value)] for pt in points for label, value in grids[name]]
    out = []
    for pt in points:
        label = "-".join(f"{name}={lab}" for name, lab, _ in pt)
        params = {name: value for name, _, value in pt}
        for est in estimators:
            out.append((f"{dist}-{label}-{est}", text, params, est))
    return out


def _cases():
    c = []
    # real support, location-scale: bounded costs
    for dist, cost in (("Normal", "tanh(z)"), ("Laplace", "exp(-z**2)"), ("Gumbel", "sigmoid(z)"),
                       ("Logistic", "tanh(z)"), ("Cauchy", "sigmoid(z)")):
        c += _grid(dist, f"E[{cost}, z ~ {dist}(loc, scale)]", {"loc": LOCS, "scale": SCALES}, CONTINUOUS_ESTIMATORS)
    # positive support
    c += _grid("LogNormal", "E[tanh(z), z ~ LogNormal(loc, scale)]", {"loc": LOCS, "scale": SCALES},
               CONTINUOUS_ESTIMATORS)
    c += _grid("Exponential", "E[exp(-z), z ~ Exponential(rate)]", {"rate": SCALES}, CONTINUOUS_ESTIMATORS)
    c += _grid("Weibull", "E[exp(-z), z ~ Weibull(scale, concentration)]",
               {"scale": SCALES, "concentration": SCALES}, CONTINUOUS_ESTIMATORS)
    c += _grid("Gamma", "E[exp(-z), z ~ Gamma(concentration, rate)]",
               {"concentration": SCALES, "rate": SCALES}, CONTINUOUS_ESTIMATORS)
    # bounded support: the cost is z itself
    c += _grid("Kumaraswamy", "E[z, z ~ Kumaraswamy(a, b)]", {"a": SCALES, "b": SCALES}, CONTINUOUS_ESTIMATORS)
    c += _grid("Beta", "E[z, z ~ Beta(a, b)]", {"a": SCALES, "b": SCALES}, CONTINUOUS_ESTIMATORS)
    c += _grid("Uniform", "E[tanh(z), z ~ Uniform(low, high)]", {"bounds": [
        ("-1e6..1e6", (-1e6, 1e6)), ("0..1e-6", (0.0, 1e-6)), ("-1e6..-1e6+1e-6", (-1e6, -1e6 + 1e-6)),
        ("1e6..1e6+1e-6", (1e6, 1e6 + 1e-6)), ("0..1e6", (0.0, 1e6)), ("-1e-6..1e-6", (-1e-6, 1e-6)),
    ]}, CONTINUOUS_ESTIMATORS)
    c += _grid("Dirichlet", "E[sum(w * z), z ~ Dirichlet(concentration)]", {"concentration": [
        ("[1e-6,1e-6,1e-6]", np.array([1e-6, 1e-6, 1e-6])), ("[1e-6,1,1e6]", np.array([1e-6, 1.0, 1e6])),
        ("[1e-3,1e-3,1e3]", np.array([1e-3, 1e-3, 1e3])), ("[1,1,1]", np.array([1.0, 1.0, 1.0])),
        ("[1e6,1e6,1e6]", np.array([1e6, 1e6, 1e6])),
    ]}, CONTINUOUS_ESTIMATORS)
    # discrete, relaxable
    c += _grid("Bernoulli", "E[(y - 0.3)**2, y ~ Bernoulli(p)]", {"p": PROBS}, RELAXABLE_ESTIMATORS)
    c += _grid("Bernoulli", "E[(y - 0.3)**2, y ~ Bernoulli(logits=l)]", {"l": LOGITS}, RELAXABLE_ESTIMATORS)
    c += _grid("Categorical", "E[sum(w * y), y ~ Categorical(probs=q)]", {"q": [
        ("[1,0,0]", np.array([1.0, 0.0, 0.0])), ("[0.5,0.5,0]", np.array([0.5, 0.5, 0.0])),
        ("[1-2e-7,1e-7,1e-7]", np.array([1.0 - 2e-7, 1e-7, 1e-7])),
        ("[1e-7,1e-7,1-2e-7]", np.array([1e-7, 1e-7, 1.0 - 2e-7])), ("[1/3,1/3,1/3]", np.full(3, 1.0 / 3.0)),
    ]}, RELAXABLE_ESTIMATORS)
    c += _grid("Categorical", "E[sum(w * y), y ~ Categorical(logits=l)]", {"l": [
        ("[50,-50,0]", np.array([50.0, -50.0, 0.0])), ("[-50,-50,50]", np.array([-50.0, -50.0, 50.0])),
        ("[50,50,-50]", np.array([50.0, 50.0, -50.0])), ("[0,0,0]", np.zeros(3)),
    ]}, RELAXABLE_ESTIMATORS)
    # discrete, counts
    c += _grid("Poisson", "E[(y - 0.3)**2, y ~ Poisson(rate)]", {"rate": SCALES}, COUNT_ESTIMATORS)
    c += _grid("Geometric", "E[(y - 0.3)**2, y ~ Geometric(p)]", {"p": PROBS[1:]}, COUNT_ESTIMATORS)
    for total in (0, 1, 10, 1000):  # 1000: 1001 states, inside the default enumeration budget
        c += _grid(f"Binomial[total_count={total}]", f"E[(y - 0.3)**2, y ~ Binomial({total}, p)]", {"p": PROBS},
                   ("enumerate", "score", "score:baseline=none"))
    for case_id, text, params, _ in c:  # Categorical costs weigh the categories; Dirichlet's too
        if "sum(w *" in text:
            params["w"] = W3
    return c


def _unpack(params):
    """Grid entries that carry two parameters at once (Uniform's bounds) become two parameters."""
    if "bounds" in params:
        params = dict(params)
        params["low"], params["high"] = params.pop("bounds")
    return params


CASES = _cases()

# -- known non-finite combinations ---------------------------------------------------------------
# id -> reason.  Every entry must name a case in the sweep (checked below).

def _params():
    ids = set()
    out = []
    for case_id, text, params, est in CASES:
        for backend in BACKENDS:
            full = f"{case_id}-{backend}"
            assert full not in ids, full
            ids.add(full)
            out.append(pytest.param(text, params, est, backend, id=full))
    return out


def _nonfinite(r):
    entries = {"value": r.value, "value_stderr": r.value_stderr}
    for name in r.grad:
        entries[f"grad[{name}]"] = r.grad[name]
        entries[f"stderr[{name}]"] = r.stderr[name]
    return {k: v for k, v in entries.items() if not np.all(np.isfinite(v))}


@pytest.mark.parametrize(("text", "params", "estimator", "backend"), _params())
def test_estimate_is_finite(text, params, estimator, backend):
    r = sg.estimate(text, _unpack(params), n=N, backend=backend, seed=SEED, estimators={_var(text): estimator})
    bad = _nonfinite(r)
    assert not bad, f"non-finite entries: {bad}"


def _var(text):
    return text.split("~")[0].rsplit(",", 1)[1].strip()


# -- invalid inputs are errors, not NaN ----------------------------------------------------------

INVALID = [
    ("E[tanh(z), z ~ Normal(0, s)]", {"s": 0.0}, None),
    ("E[tanh(z), z ~ Normal(0, s)]", {"s": -1e-6}, None),
    ("E[exp(-z), z ~ Exponential(r)]", {"r": 0.0}, None),
    ("E[z, z ~ Beta(a, 1)]", {"a": 0.0}, None),
    ("E[tanh(z), z ~ Uniform(lo, hi)]", {"lo": 1.0, "hi": 1.0}, None),
    ("E[(y - 0.3)**2, y ~ Bernoulli(p)]", {"p": -1e-12}, None),
    ("E[(y - 0.3)**2, y ~ Bernoulli(p)]", {"p": 1.0 + 1e-12}, None),
    ("E[(y - 0.3)**2, y ~ Geometric(p)]", {"p": 0.0}, None),
    ("E[sum(w * y), y ~ Categorical(probs=q)]", {"q": np.array([0.5, 0.5, 0.5]), "w": W3}, None),
    ("E[sum(w * y), y ~ Categorical(probs=q)]", {"q": np.array([1.5, -0.5, 0.0]), "w": W3}, None),
    ("E[(y - 0.3)**2, y ~ Binomial(n, 0.5)]", {"n": 2.5}, "score"),
    ("E[(y - 0.3)**2, y ~ Bernoulli(p)]", {"p": 0.5}, "relaxed:temperature=0"),
    ("E[(y - 0.3)**2, y ~ Bernoulli(p)]", {"p": 0.5}, "straight_through_gumbel:temperature=-1"),
    ("E[tanh(z), z ~ Normal(m, 1)]", {"m": np.inf}, None),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("text", "params", "estimator"), INVALID,
                         ids=[f"{t.split('~')[1].strip(' ]')}-{p}-{e}" for t, p, e in INVALID])
def test_invalid_input_is_an_error(text, params, estimator, backend):
    estimators = {_var(text): estimator} if estimator else None
    with pytest.raises(sg.StochgradError):
        sg.estimate(text, params, n=N, backend=backend, seed=SEED, estimators=estimators)
