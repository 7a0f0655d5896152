"""Quantized samples do not pass silently: a location-scale node whose scale is below one unit in
the last place of its location (``scale < eps * |loc|`` in the backend's dtype) gives a
PrecisionWarning naming the node, the dtype and the values; ordinary parameters never warn.

Why it matters (checked below): in float32 ``z ~ Normal(1, 1e-8)`` rounds every sample to 1, and
the score-function estimate of ``d/dmu E[z**2] = 2 mu`` is more than 6 standard errors off, while
the pathwise gradient ``2 z = 2`` stays right.
"""

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import stochgrad as sg
from stochgrad.testing.assertions import assert_within_stderr

FAMILIES = ["Normal", "LogNormal", "Laplace", "Logistic", "Gumbel", "Cauchy"]
EPS = {"float32": float(np.finfo(np.float32).eps), "float64": float(np.finfo(np.float64).eps)}
# the reachable cases: (backend, dtype)
CASES = [("torch", "float32"), ("torch", "float64"), ("autograd", "float32"), ("autograd", "float64")]


def _estimate(family, loc, scale, backend, dtype, n=64, estimators=None):
    return sg.estimate(f"E[z, z ~ {family}(mu, s)]", {"mu": loc, "s": scale}, n=n, seed=0, backend=backend,
                       backend_options={"dtype": dtype}, estimators=estimators)


@pytest.mark.parametrize("backend,dtype", CASES)
@pytest.mark.parametrize("family", FAMILIES)
def test_scale_below_an_ulp_of_loc_warns(family, backend, dtype):
    loc, scale = 3.0, (2.0**-30 if dtype == "float32" else 2.0**-60)  # exact in both dtypes, < eps * loc / 100
    with pytest.warns(sg.PrecisionWarning) as record:
        _estimate(family, loc, scale, backend, dtype)
    message = str(record[0].message)
    assert f"z ~ {family}(mu, s)" in message and dtype in message
    assert f"scale={scale!r}" in message and "loc=3.0" in message
    assert "score-function" in message and ("float64" in message)  # the way out is named


def test_arrays_name_the_entries():
    with pytest.warns(sg.PrecisionWarning, match=r"in 1 of 3 entries, e\.g\. scale=1e-09, loc=2\.0"):
        sg.estimate("E[sum(z), z ~ Normal(mu, s)]", {"mu": [1.0, 2.0, 3.0], "s": [1e-2, 1e-9, 1e-2]}, n=8, seed=0,
                    backend="autograd", backend_options={"dtype": "float32"})


def test_a_computed_scale_and_a_compiled_objective_warn():
    f = sg.compile("E[z**2, z ~ Normal(mu, exp(s))]", backend="torch", n=16, backend_options={"dtype": "float32"}, seed=0)
    with pytest.warns(sg.PrecisionWarning, match=r"z ~ Normal\(mu, exp\(s\)\).*float32"):
        f(mu=torch.tensor(1.0), s=torch.tensor(-20.0))
    quiet = sg.compile("E[z**2, z ~ Normal(mu, exp(s))]", backend="torch", n=16, backend_options={"dtype": "float32"}, seed=0,
                       validate=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", sg.PrecisionWarning)
        quiet(mu=torch.tensor(1.0), s=torch.tensor(-20.0))  # validate=False: no host reads, no check


def test_why_score_function_estimates_are_untrustworthy_and_pathwise_ones_are_not():
    text, params = "E[z**2, z ~ Normal(mu, s)]", {"mu": 1.0, "s": 1e-8}
    with pytest.warns(sg.PrecisionWarning):
        score = sg.estimate(text, params, n=10_000, seed=1, backend="torch", backend_options={"dtype": "float32"}, estimators={"z": "score"})
    assert abs(score.grad["mu"] - 2.0) > 6 * score.stderr["mu"]  # the truth is 2 mu = 2
    with pytest.warns(sg.PrecisionWarning):
        path = sg.estimate(text, params, n=10_000, seed=1, backend="torch", backend_options={"dtype": "float32"})
    assert_within_stderr(path.grad["mu"], 2.0, path.stderr["mu"], atol=1e-6, name="pathwise d/dmu")
    with warnings.catch_warnings():  # float64 holds the scale: no warning, and the score function is right
        warnings.simplefilter("error", sg.PrecisionWarning)
        sg.estimate(text, params, n=8, seed=1, backend="torch", backend_options={"dtype": "float64"}, estimators={"z": "score"})


def test_kl_terms_and_closed_forms_do_not_warn():
    """A closed-form KL uses no samples: its parameters are not sampled, so nothing is quantized."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", sg.PrecisionWarning)
        r = sg.estimate("KL(Normal(mu, s) || Normal(0, 1))", {"mu": 1.0, "s": 1e-9}, n=4, seed=0,
                        backend="torch", backend_options={"dtype": "float32"})
    assert math.isfinite(r.value)


@settings(max_examples=30, deadline=None)
@given(family=st.sampled_from(FAMILIES), case=st.sampled_from(CASES),
       loc=st.floats(-1e6, 1e6, allow_subnormal=False), factor=st.floats(1e3, 1e12))
def test_ordinary_parameters_never_warn(family, case, loc, factor):
    backend, dtype = case
    scale = max(factor * EPS[dtype] * abs(loc), 1e-30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sg.NonFiniteWarning)  # exp of a LogNormal's large loc overflows: not ours
        warnings.simplefilter("error", sg.PrecisionWarning)
        _estimate(family, loc, scale, backend, dtype, n=2)
