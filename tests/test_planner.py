"""The planner: rule table, reasons, overrides and dependency handling."""

import pytest

import stochgrad as sg
from stochgrad.planner import RULES, PlannedExpect, Rule


def test_pathwise_for_reparameterizable_differentiable_cost():
    p = sg.plan("E[z**2, z ~ Normal(mu, sigma)]")
    assert str(p) == "z ~ Normal(mu, sigma): pathwise \u2014 reparameterizable, cost differentiable in z [unbiased]"
    assert p.node("z").estimator == "pathwise"
    assert p.parameters == ("mu", "sigma")


@pytest.mark.parametrize(
    "text, culprit",
    [
        ("E[z > 0, z ~ Normal(mu, 1)]", "comparison `z > 0`"),
        ("E[floor(z), z ~ Exponential(rate)]", "non-differentiable function `floor(z)`"),
        ("E[exp(z) * (sign(z - 1) + 2), z ~ Normal(mu, 1)]", "non-differentiable function `sign(z - 1)`"),
        ("E[y, z ~ Normal(mu, 1), y ~ Normal(z >= 1, 1)]", "comparison `z >= 1`"),
    ],
)
def test_non_differentiable_path_gets_score_function(text, culprit):
    node = sg.plan(text).node("z")
    assert node.estimator == "score"
    assert node.reason == f"cost not differentiable in z: {culprit}"
    assert not node.biased
    assert "leave-one-out baseline" in str(node)


def test_path_through_a_score_node_is_differentiable():
    # x is score-estimated (comparison), but z reaches the cost through log q(x | z): z stays pathwise.
    p = sg.plan("E[x > 0, z ~ Normal(mu, 1), x ~ Normal(z, 1)]")
    assert p.node("x").estimator == "score"
    assert p.node("z").estimator == "pathwise"


def test_forced_pathwise_through_comparison_is_flagged_biased_and_propagates():
    p = sg.plan("E[x > 0, z ~ Normal(mu, 1), x ~ Normal(z, 1)]", estimators={"x": "pathwise"})
    x, z = p.node("x"), p.node("z")
    assert x.biased and x.reason.startswith("requested; cost not differentiable in x")
    assert "[biased]" in str(x)
    assert z.estimator == "score" and "through x" in z.reason


def test_overrides():
    p = sg.plan("E[z**2, z ~ Normal(mu, 1)]", estimators={"z": "score"})
    assert p.node("z").estimator == "score" and p.node("z").reason == "requested"
    p = sg.plan("E[z**2, z ~ Normal(mu, 1)]", estimators={"z": sg.Score(baseline=None)})
    assert str(p.node("z")).startswith("z ~ Normal(mu, 1): score (no baseline)")


def test_override_errors():
    with pytest.raises(sg.PlanError, match=r"unknown estimator 'scor' for 'z' \(did you mean 'score'\?\); choose from pathwise, score"):
        sg.plan("E[z, z ~ Normal(0, 1)]", estimators={"z": "scor"})
    with pytest.raises(sg.PlanError, match=r"override for 'zz', which is not a random variable \(did you mean 'z'\?\); random variables: z"):
        sg.plan("E[z, z ~ Normal(0, 1)]", estimators={"zz": "score"})
    with pytest.raises(sg.PlanError, match=r"unknown baseline 'lo' \(did you mean 'loo'\?\)"):
        sg.Score(baseline="lo")


def test_pathwise_override_needs_a_sampler(monkeypatch):
    class NoSampler(sg.Distribution):
        name = "NoSamplerDist"
        params = (sg.Param("loc"),)
        reparameterized = False

        def log_prob(self, B, p, x):
            return -0.5 * (x - p["loc"]) ** 2

    monkeypatch.setitem(sg.DISTRIBUTIONS, "NoSamplerDist", NoSampler())  # registered for this test only
    assert sg.plan("E[z, z ~ NoSamplerDist(m)]").node("z").reason == "NoSamplerDist has no pathwise sampler"
    with pytest.raises(sg.PlanError, match=r"z ~ NoSamplerDist\(m\): pathwise estimator requested, but NoSamplerDist has no pathwise sampler; use 'score'"):
        sg.plan("E[z, z ~ NoSamplerDist(m)]", estimators={"z": "pathwise"})


def test_rules_are_a_table():
    assert all(isinstance(r, Rule) for r in RULES)
    assert [r.spec.name for r in RULES] == ["pathwise", "enumerate", "relaxed", "score", "score", "score", "score"]


def test_every_node_listed_in_evaluation_order_with_nesting():
    p = sg.plan("E[E[x**2, x ~ Normal(z, 1)] + w, z ~ Normal(mu, s), w ~ Laplace(0, 1)]")
    assert [n.var for n in p.nodes] == ["z", "w", "x"]
    assert [n.uid for n in p.nodes] == [0, 1, 2]
    assert len(str(p).splitlines()) == 3


def test_deterministic_expression():
    p = sg.plan("mu**2 + 1")
    assert p.nodes == () and str(p) == "no random nodes: the expression is deterministic"


def test_terms_multiply_only_their_own_score_nodes():
    p = sg.plan("E[z**2 - x**2 + 3, z ~ Normal(mu, 1), x ~ Normal(nu, 1)]", estimators={"z": "score", "x": "score"})
    root = p.root
    assert isinstance(root, PlannedExpect)
    assert [sign for sign, _ in root.terms] == [1.0, -1.0, 1.0]
    assert root.boxes == ((0,), (1,), ())


def test_plans_are_cached_and_accept_text_or_ir():
    e = sg.parse("E[z, z ~ Normal(mu, 1)]")
    assert sg.plan(e) is sg.plan("E[z, z ~ Normal(mu, 1)]")
    assert sg.plan(e, estimators={"z": "score"}) is sg.plan(e, estimators={"z": sg.Score()})
