"""compare lists every registered estimator for every random node: a row where it ran, else a
``Comparison.not_run`` entry saying why (the node's law or backend refuses it, or the expression does).

The class tested: for each law and expression shape below (continuous, binary, categorical, count,
two nodes, a K-sample bound) and each backend, the rows and ``not_run`` partition the registry per
node, every unbiased row agrees with the exact gradient (enumeration or SymPy) within 6 standard
errors, and configured estimators given by ``estimators=`` run beside the defaults.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import stochgrad as sg
from stochgrad.cli import main
from stochgrad.estimators import ESTIMATORS, EstimatorSpec, Score, register_estimator, unregister_estimator

LOGW = ("sum(log_prob(Bernoulli(0.5), z) + log_prob(Normal(2 * z - 1, 1), x)"
        " - log_prob(Bernoulli(logits=a), z), axis=-1)")
CASES = {
    "normal": ("E[z**2, z ~ Normal(mu, 1.0)]", dict(mu=0.5)),
    "bernoulli": ("E[(b - 0.45)**2, b ~ Bernoulli(p)]", dict(p=0.3)),
    "bernoulli vector": ("E[sum((b - 0.45)**2 * w), b ~ Bernoulli(logits=a)]",
                         dict(a=np.array([0.1, -0.2, 0.3]), w=np.array([1.0, 2.0, -1.0]))),
    "categorical": ("E[sum(c * w), c ~ Categorical(logits=l)]",
                    dict(l=np.array([0.1, 0.2, -0.3]), w=np.array([1.0, 2.0, 3.0]))),
    "two nodes": ("E[z * x, z ~ Normal(mu, 1.0), x ~ Poisson(lam)]", dict(mu=0.5, lam=2.0)),
    "k-sample bound": (f"E[logmeanexp({LOGW}, axis=0), z ~ iid(3, Bernoulli(logits=a))]",
                       dict(a=np.array([0.4, -0.3]), x=np.array([0.7, -1.2]))),
}


def _listed(c: sg.Comparison, var: str) -> dict[str, int]:
    """How often each registered estimator name is listed for ``var``, over rows and not_run."""
    names = [r.estimator.split()[0] for r in c.rows if r.var == var]
    names += [m.estimator.split()[0] for m in c.not_run if m.var == var]
    return {k: names.count(k) for k in set(names)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rows_and_not_run_cover_the_registry_for_every_node(case, backend):
    text, params = CASES[case]
    c = sg.compare(text, params, n=300, seed=2, backend=backend, temperatures=(0.5,))
    for node in sg.plan(text, params).nodes:
        listed = _listed(c, node.var)
        assert set(listed) == set(ESTIMATORS), (node.var, set(ESTIMATORS) ^ set(listed))
        refused = {m.estimator.split()[0] for m in c.not_run if m.var == node.var}
        ran = {r.estimator.split()[0] for r in c.rows if r.var == node.var}
        assert not refused & ran, refused & ran  # never both: one variant per default configuration
    for m in c.not_run:
        assert m.reason and m.stage in ("law", "expression"), m
    text_table = c.table()
    for m in c.not_run:
        assert m.estimator.split()[0] in text_table
    assert all(np.isfinite(np.asarray(v)).all() for r in c.rows for v in r.grad.values())


@pytest.mark.parametrize("case", ["normal", "bernoulli", "bernoulli vector", "categorical"])
def test_every_unbiased_row_agrees_with_the_exact_gradient(case):
    text, params = CASES[case]
    c = sg.compare(text, params, n=6000, seed=3, backend="torch", temperatures=(0.5,))
    assert c.exact is not None, case
    checked = 0
    for r in c.rows:
        if not r.unbiased:
            continue
        for k, g in r.grad.items():
            err = np.abs(np.asarray(g) - np.asarray(c.exact[k]))
            tol = 6 * np.asarray(r.stderr[k]) + 1e-9 * (1 + np.abs(np.asarray(c.exact[k])))
            assert np.all(err <= tol), (r.estimator, k, g, c.exact[k], r.stderr[k])
        checked += 1
    assert checked >= 4


def test_configured_estimators_run_beside_the_defaults():
    text, params = CASES["bernoulli vector"]
    W = torch.tensor([[0.3], [-0.2], [0.5]], dtype=torch.float64)
    relax = sg.Relax(surrogate=lambda z: (z @ W).reshape(-1), learn=False)
    c = sg.compare(text, params, n=2000, seed=4, backend="torch", temperatures=(0.5,),
                   estimators={"b": [relax, "score:baseline=none", sg.Relaxed(temperature=0.05)]})
    names = [r.estimator for r in c.rows]
    assert any(name.startswith("relax ") or name == "relax" for name in names), names
    assert "relaxed (Gumbel-softmax, temperature 0.05)" in names
    assert names.count("score (no baseline)") == 2  # the default variant and the one asked for
    row = next(r for r in c.rows if r.estimator.split()[0] == "relax")
    exact = c.exact["a"]
    assert row.unbiased and np.all(np.abs(row.grad["a"] - exact) <= 6 * row.stderr["a"])


def test_estimators_for_an_unknown_variable_or_a_bad_name_are_refused():
    text, params = CASES["bernoulli"]
    with pytest.raises(sg.ValidationError, match="'q', which is not a random variable"):
        sg.compare(text, params, n=100, seed=0, estimators={"q": "score"})
    with pytest.raises(sg.PlanError, match="unknown estimator"):
        sg.compare(text, params, n=100, seed=0, estimators={"b": "scroe"})


def test_an_estimator_that_opts_out_is_listed_as_not_compared():
    class Quiet(Score):
        name = "quiet_score"
        compared = False

        def describe(self):
            return "quiet_score"

    register_estimator(Quiet)
    try:
        c = sg.compare(*CASES["bernoulli"], n=200, seed=0)
        (entry,) = [m for m in c.not_run if m.estimator == "quiet_score"]
        assert "not compared by default" in entry.reason and "'quiet_score'" in entry.reason
        c = sg.compare(*CASES["bernoulli"], n=200, seed=0, estimators={"b": Quiet()})
        assert any(r.estimator.startswith("quiet_score") for r in c.rows)
    finally:
        unregister_estimator("quiet_score")
    assert issubclass(Quiet, EstimatorSpec)


def test_cli_compare_takes_estimators_and_prints_what_it_did_not_run(capsys):
    text, _ = CASES["bernoulli"]
    assert main(["compare", text, "--at", "p=0.3", "-n", "500", "--seed", "1", "-b", "torch",
                 "-e", "b=relaxed:temperature=0.05", "--temperature", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "relaxed (Gumbel-softmax, temperature 0.05)" in out
    assert "not applicable to b: pathwise" in out and "relax" in out
    assert main(["compare", text, "--at", "p=0.3", "-n", "200", "--seed", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {m["estimator"] for m in data["not_run"]} >= {"pathwise", "relax"}
    assert all(m["stage"] in ("law", "expression") and m["reason"] for m in data["not_run"])


# -- relaxed values never reach a discrete law's mass function ---------------------------------------

MASS_COSTS = [
    "log_prob(Bernoulli(0.5), {v})",
    "sum(log_prob(Bernoulli(q), {v}))",
    "2 * log_prob(Bernoulli(logits=a), {v}) + {v}",
    "exp(log_prob(Bernoulli(0.25), {v}))",
]


@settings(max_examples=12, deadline=None)
@given(cost=st.sampled_from(MASS_COSTS), temperature=st.sampled_from([0.1, 0.5, 2.0]),
       vector=st.booleans())
def test_relaxed_refuses_a_discrete_mass_at_the_node_and_straight_through_runs(cost, temperature, vector):
    law = "Bernoulli(logits=a)"
    body = cost.format(v="b")
    text = f"E[sum({body}), b ~ {law}]" if vector else f"E[{body}, b ~ {law}]"
    params = {"a": np.array([0.2, -0.4]) if vector else 0.2, **({"q": 0.3} if "(q)" in body else {})}
    with pytest.raises(sg.PlanError, match="off the support of"):
        sg.estimate(text, params, n=50, seed=0, estimators={"b": sg.Relaxed(temperature=temperature)})
    r = sg.estimate(text, params, n=50, seed=0, estimators={"b": "straight_through"})
    assert all(np.isfinite(np.asarray(g)).all() for g in r.grad.values())


def test_relaxed_still_runs_where_the_mass_is_of_another_variable():
    text = "E[log_prob(Bernoulli(0.5), c) + b, b ~ Bernoulli(p), c ~ Bernoulli(0.5)]"
    r = sg.estimate(text, dict(p=0.3), n=200, seed=0, estimators={"b": "relaxed"})
    assert np.isfinite(r.grad["p"])
