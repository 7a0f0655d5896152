"""User distributions scoped to one call (``distributions=``, stochgrad.distscope).

The closed forms are hand-derived: for ``z = loc + shift + scale * eps``, E[z] = loc + shift and
dE[z^2]/dloc = 2 (loc + shift); for a Bernoulli(p) law, E[b] = p and dE[b]/dp = 1 (score function,
exact up to its standard error).
"""

import math
import threading

import autograd.numpy as anp
import numpy as np
import pytest

import stochgrad as sg
from stochgrad.errors import StochgradError

N = 4_000


def shifted(shift, name="MyLoc"):
    """A location-scale law ``loc + shift + scale * eps`` (pathwise), written with autograd.numpy."""

    def sample(p, noise):
        return p["loc"] + shift + p["scale"] * noise("normal")

    def log_prob(p, x):
        t = (x - p["loc"] - shift) / p["scale"]
        return -0.5 * t * t - anp.log(p["scale"]) - 0.5 * math.log(2 * math.pi)

    return sg.UserDistribution(
        name, {"loc": "real", "scale": "positive"}, sample=sample, log_prob=log_prob, pathwise=True
    )


def coin(name="MyCoin"):
    def sample(p, noise):
        return anp.where(noise("uniform") < p["p"], 1.0, 0.0)

    def log_prob(p, x):
        return x * anp.log(p["p"]) + (1.0 - x) * anp.log1p(-p["p"])

    return sg.UserDistribution(name, ("p",), sample=sample, log_prob=log_prob, discrete=True)


TEXT = "E[z ** 2, z ~ MyLoc(loc, 0.5)]"


def second_moment(loc, shift):  # E[(loc + shift + 0.5 eps)^2] and its loc-derivative
    return (loc + shift) ** 2 + 0.25, 2 * (loc + shift)


@pytest.mark.parametrize("shift", [0.0, 1.0, -2.5])
def test_a_scoped_law_runs_in_its_call_only(shift):
    law = shifted(shift)
    r = sg.estimate(TEXT, {"loc": 0.3}, n=N, seed=0, backend="autograd", distributions={"MyLoc": law})
    value, slope = second_moment(0.3, shift)
    assert abs(r.value - value) < 6 * r.value_stderr
    assert abs(r.grad["loc"] - slope) < 6 * r.stderr["loc"] + 1e-12
    assert "MyLoc" not in sg.DISTRIBUTIONS
    with pytest.raises(sg.ParseError, match="unknown distribution 'MyLoc'"):
        sg.estimate(TEXT, {"loc": 0.3}, n=N, seed=0, backend="autograd")


def test_two_laws_under_one_name_never_share_a_parse_a_plan_or_a_program():
    a, b = shifted(0.0), shifted(3.0)
    for _ in range(2):  # the second round hits every cache
        ra = sg.estimate(TEXT, {"loc": 0.3}, n=N, seed=1, backend="autograd", distributions={"MyLoc": a})
        rb = sg.estimate(TEXT, {"loc": 0.3}, n=N, seed=1, backend="autograd", distributions={"MyLoc": b})
        for r, shift in ((ra, 0.0), (rb, 3.0)):
            value, slope = second_moment(0.3, shift)
            assert abs(r.value - value) < 6 * r.value_stderr
            assert abs(r.grad["loc"] - slope) < 6 * r.stderr["loc"] + 1e-12
    pa = sg.plan(TEXT, {"loc": 0.3}, backend="autograd", distributions={"MyLoc": a})
    pb = sg.plan(TEXT, {"loc": 0.3}, backend="autograd", distributions={"MyLoc": b})
    assert pa != pb and str(pa) == str(pb)
    qa = pa.estimate({"loc": 0.3}, n=N, seed=1)  # a plan keeps its laws: no distributions= needed
    qb = pb.estimate({"loc": 0.3}, n=N, seed=1)
    assert qa.value == pytest.approx(ra.value, rel=1e-12) and qb.value == pytest.approx(rb.value, rel=1e-12)
    assert abs(qb.value - qa.value - (second_moment(0.3, 3.0)[0] - second_moment(0.3, 0.0)[0])) < 6 * (
        qa.value_stderr + qb.value_stderr
    )


def test_a_scoped_law_shadows_a_registered_one_for_its_call():
    sg.register_distribution(shifted(0.0))
    try:
        inside = sg.estimate(TEXT, {"loc": 0.0}, n=N, seed=2, backend="autograd", distributions={"MyLoc": shifted(2.0)})
        outside = sg.estimate(TEXT, {"loc": 0.0}, n=N, seed=2, backend="autograd")
    finally:
        sg.unregister_distribution("MyLoc")
    assert abs(inside.value - 4.25) < 6 * inside.value_stderr
    assert abs(outside.value - 0.25) < 6 * outside.value_stderr


def test_scoped_discrete_law_gets_the_score_function_and_python_built_nodes():
    law = coin()
    b, p = sg.symbols("b p")
    text = "E[b, b ~ MyCoin(p)]"
    r = sg.estimate(text, {"p": 0.3}, n=N, seed=3, backend="autograd", distributions={"MyCoin": law})
    assert "score" in str(r.plan)
    assert abs(r.value - 0.3) < 6 * r.value_stderr and abs(r.grad["p"] - 1.0) < 6 * r.stderr["p"]
    expr = sg.E(b, b=law(p))  # building with an unregistered law works; running it needs the law
    assert str(expr) == text
    r = sg.estimate(expr, {"p": 0.3}, n=N, seed=3, backend="autograd", distributions={"MyCoin": law})
    assert abs(r.value - 0.3) < 6 * r.value_stderr
    with pytest.raises(StochgradError, match="unknown distribution 'MyCoin'"):
        sg.estimate(expr, {"p": 0.3}, n=N, seed=3, backend="autograd")


def test_compiled_objective_keeps_its_laws():
    torch = pytest.importorskip("torch")

    def sample(p, noise):
        return p["loc"] + 1.0 + p["scale"] * noise("normal")

    def log_prob(p, x):
        t = (x - p["loc"] - 1.0) / p["scale"]
        return -0.5 * t * t - torch.log(p["scale"]) - 0.5 * math.log(2 * math.pi)

    law = sg.UserDistribution(
        "MyLoc", {"loc": "real", "scale": "positive"}, sample=sample, log_prob=log_prob, pathwise=True
    )
    f = sg.compile(TEXT, backend="torch", n=N, seed=0, distributions={"MyLoc": law})
    loc = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    values = [f(loc=loc) for _ in range(3)]
    (g,) = torch.autograd.grad(values[-1], loc)
    value, slope = second_moment(0.5, 1.0)
    se = 0.5 * math.sqrt(2 * 0.25 + 4 * 1.5**2) / math.sqrt(N)  # sd of z^2 for z ~ N(1.5, 0.5), over sqrt(N)
    assert all(abs(v.item() - value) < 6 * se for v in values)
    assert abs(g.item() - slope) < 6 * 2 * 0.5 / math.sqrt(N)  # d/dloc z^2 = 2 z: sd 2 * 0.5
    assert "MyLoc" not in sg.DISTRIBUTIONS
    assert f.plan(loc=()).nodes[0].spec.name == "pathwise"


def test_threads_see_their_own_scopes():
    results = {}

    def run(shift):
        r = sg.estimate(TEXT, {"loc": 0.0}, n=N, seed=4, backend="autograd", distributions={"MyLoc": shifted(shift)})
        results[shift] = r

    threads = [threading.Thread(target=run, args=(s,)) for s in (0.0, 1.0, 2.0, 3.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for shift, r in results.items():
        assert abs(r.value - second_moment(0.0, shift)[0]) < 6 * r.value_stderr
    assert len(results) == 4


@pytest.mark.parametrize(
    "given, message",
    [
        ({"Normal": shifted(0.0, name="Normal")}, "would hide the built-in distribution Normal"),
        ({"exp": shifted(0.0, name="exp")}, "would hide the built-in function exp"),
        ({"Other": shifted(0.0)}, "is the distribution named 'MyLoc': the key must be its name"),
        ({"MyLoc": 3.0}, "is a float, not a distribution"),
        ([shifted(0.0)], "must be a mapping of names to distributions"),
    ],
)
def test_bad_scopes_name_the_problem(given, message):
    for call in (
        lambda: sg.estimate(TEXT, {"loc": 0.0}, n=8, seed=0, backend="autograd", distributions=given),
        lambda: sg.plan(TEXT, {"loc": 0.0}, distributions=given),
        lambda: sg.parse(TEXT, distributions=given),
    ):
        with pytest.raises(StochgradError, match=message):
            call()
    assert "MyLoc" not in sg.DISTRIBUTIONS and sg.DISTRIBUTIONS["Normal"].name == "Normal"


def test_misspelt_keyword_still_gets_a_did_you_mean():
    with pytest.raises(TypeError, match="distributions"):
        sg.estimate(TEXT, {"loc": 0.0}, n=8, seed=0, distribution={"MyLoc": shifted(0.0)})


def test_parse_with_a_scope_prints_back():
    law = shifted(0.0)
    e = sg.parse(TEXT, distributions={"MyLoc": law})
    assert str(e) == TEXT
    assert sg.parse(str(e), distributions={"MyLoc": law}) == e
    np.testing.assert_equal(sg.estimate(e, {"loc": 0.0}, n=8, seed=0, distributions={"MyLoc": law}).n, 8)
