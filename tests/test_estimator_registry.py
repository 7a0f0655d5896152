"""The estimator registry: a new estimator is one class plus one ``register_estimator`` line.

A toy estimator defined here -- the score function with a *constant* baseline ``b``, unbiased
because ``E[b grad log q] = b grad E[1] = 0`` -- is registered in a fixture (and removed after it),
then requested by name in ``estimate``, ``compile`` and the CLI, listed by ``applicable`` and run by
``compare``.  Its gradient is checked against the hand-derived closed form of
``E[z**2, z ~ Normal(mu, sigma)] = mu**2 + sigma**2``: ``d/dmu = 2 mu``, ``d/dsigma = 2 sigma``
(z-test at 6 standard errors).  Properties over every registered estimator and Hypothesis-drawn
distributions: the facts are consistent with what ``sample`` returns, and ``applicable`` agrees
with ``requires`` and with the planner's acceptance of an override (where the estimator needs a form
of cost, its ``cost_form``, the planner may still refuse the test's cost ``E[z]``, naming it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stochgrad as sg
from stochgrad.backend import get_backend
from stochgrad.cli import main
from stochgrad.distributions import DISTRIBUTIONS, joint_states, lookup
from stochgrad.errors import PlanError, StochgradError
from stochgrad.estimators import (
    ESTIMATORS,
    EstimatorSpec,
    Score,
    applicable,
    as_spec,
    register_estimator,
    unregister_estimator,
)
from stochgrad.noise import NoiseSource
from stochgrad.planner import ALL_CAPABILITIES
from stochgrad.testing.strategies import params_for

NORMAL_SQ = "E[z**2, z ~ Normal(mu, sigma)]"
MU, SIGMA = 0.7, 1.3


@dataclass(frozen=True)
class ConstantBaseline(EstimatorSpec):
    """Score function minus a constant baseline: ``(f(z) - b) grad log q(z)``."""

    name: ClassVar[str] = "toy"
    scores: ClassVar[bool] = True
    baseline: float = 1.0

    def describe(self) -> str:
        return f"toy (constant baseline {self.baseline:g})"

    def control_variate(self, B: Any, cost: Any, count: int, block: int | None, state: Any = None) -> Any:
        return 0.0 * B.stop_gradient(cost) + self.baseline

    def sample(self, d: Any, B: Any, p: Any, draw: Any, shape: tuple[int, ...]) -> tuple[Any, Any]:
        return d.sample_and_log_prob(B, p, draw, shape)


@pytest.fixture
def toy():
    register_estimator(ConstantBaseline)  # the one registry line
    try:
        yield ConstantBaseline
    finally:
        unregister_estimator("toy")


def _z_ok(mean: float, se: float, exact: float) -> bool:
    return abs(mean - exact) < 6 * se


def test_toy_runs_by_name_in_estimate_and_is_unbiased(toy, backend):
    r = sg.estimate(NORMAL_SQ, {"mu": MU, "sigma": SIGMA}, n=40_000, backend=backend, seed=11,
                    estimators={"z": "toy:baseline=3"})
    node = r.plan.node("z")
    assert node.estimator == "toy" and node.spec == ConstantBaseline(3.0) and not node.biased
    assert "z ~ Normal(mu, sigma): toy (constant baseline 3)" in str(r.plan)
    assert _z_ok(r.value, r.value_stderr, MU**2 + SIGMA**2)
    assert _z_ok(float(r.grad["mu"]), float(r.stderr["mu"]), 2 * MU)
    assert _z_ok(float(r.grad["sigma"]), float(r.stderr["sigma"]), 2 * SIGMA)


def test_toy_baseline_is_the_one_subtracted(toy, backend):
    """On identical noise, baseline 0 is exactly the score function without a baseline, and a
    baseline b moves each run's gradient by -b * mean(grad log q), which for mu is
    -b * mean((z - mu) / sigma**2): checked against the samples' own mean, recovered from b = 0 and b = 1."""
    run = {b: sg.estimate(NORMAL_SQ, {"mu": MU, "sigma": SIGMA}, n=5000, backend=backend, seed=4,
                          estimators={"z": ConstantBaseline(b)}) for b in (0.0, 1.0, 2.5)}
    plain = sg.estimate(NORMAL_SQ, {"mu": MU, "sigma": SIGMA}, n=5000, backend=backend, seed=4,
                        estimators={"z": "score:baseline=none"})
    for k in ("mu", "sigma"):
        np.testing.assert_allclose(run[0.0].grad[k], plain.grad[k], rtol=1e-12, atol=1e-12)
        shift = float(run[1.0].grad[k]) - float(run[0.0].grad[k])  # -mean(grad log q)
        np.testing.assert_allclose(float(run[2.5].grad[k]) - float(run[0.0].grad[k]), 2.5 * shift, rtol=1e-8, atol=1e-12)
    assert abs(float(run[1.0].grad["mu"]) - float(run[0.0].grad["mu"])) > 0  # the baseline did something


def test_toy_runs_in_a_compiled_objective():
    torch = pytest.importorskip("torch")
    register_estimator(ConstantBaseline)
    try:
        for fuse in (False, True):
            f = sg.compile(NORMAL_SQ, backend="torch", n=2000, seed=5, estimators={"z": "toy"}, fuse=fuse)
            grads = []
            for _ in range(40):
                mu = torch.tensor(MU, dtype=torch.float64, requires_grad=True)
                f(mu=mu, sigma=torch.tensor(SIGMA, dtype=torch.float64)).backward()
                grads.append(mu.grad.item())
            se = np.std(grads, ddof=1) / math.sqrt(len(grads))
            assert _z_ok(float(np.mean(grads)), se, 2 * MU), (fuse, np.mean(grads), se)
    finally:
        unregister_estimator("toy")


def test_toy_is_listed_by_applicable_compare_and_the_cli(toy, capsys):
    for name in ("Normal", "Bernoulli", "Poisson"):
        assert any(isinstance(s, ConstantBaseline) for s in applicable(lookup(name), states=None))
    with pytest.raises(PlanError, match=r"choose from pathwise, score, .*detached, .*toy"):
        as_spec("toyy", "z")
    c = sg.compare(NORMAL_SQ, {"mu": MU, "sigma": SIGMA}, n=20_000, seed=2)
    rows = {r.estimator: r for r in c.rows}
    toy_row = rows["toy (constant baseline 1)"]
    assert toy_row.unbiased and c.exact == {"mu": 2 * MU, "sigma": 2 * SIGMA}
    for k in ("mu", "sigma"):
        assert abs(float(toy_row.bias[k])) < 6 * float(toy_row.stderr[k])
    with pytest.raises(SystemExit):
        main(["estimate", "--help"])
    assert re.search(r"detached, .*toy", capsys.readouterr().out.replace("\n", " ").replace("  ", " "))
    assert main(["estimate", NORMAL_SQ, "--at", f"mu={MU}", "--at", f"sigma={SIGMA}", "-e", "z=toy:baseline=2",
                 "-n", "2000", "--json", "--no-exact"]) == 0


def test_registry_stays_clean_and_refuses_bad_classes(toy):
    with pytest.raises(StochgradError, match="registered already"):
        @dataclass(frozen=True)
        class Other(EstimatorSpec):
            name: ClassVar[str] = "toy"
        register_estimator(Other)
    with pytest.raises(StochgradError, match="EstimatorSpec subclass"):
        register_estimator(int)  # type: ignore[arg-type]
    with pytest.raises(StochgradError, match="needs a name"):
        register_estimator(dataclass(frozen=True)(type("Nameless", (EstimatorSpec,), {})))

    @dataclass(frozen=True)
    class Broken(EstimatorSpec):
        name: ClassVar[str] = "broken"
        temperature: float = -1.0

        def __post_init__(self) -> None:
            raise PlanError("temperature must be > 0")
    with pytest.raises(PlanError, match="temperature must be > 0"):
        register_estimator(Broken)  # its default configuration must construct

    @dataclass(frozen=True)
    class Both(EstimatorSpec):
        name: ClassVar[str] = "both"
        scores: ClassVar[bool] = True
        enumerates: ClassVar[bool] = True
    with pytest.raises(StochgradError, match="cannot both enumerate and score"):
        register_estimator(Both)
    with pytest.raises(StochgradError, match="no estimator named 'nope'"):
        unregister_estimator("nope")
    assert register_estimator(ConstantBaseline) is ConstantBaseline  # registering again is a no-op
    assert list(ESTIMATORS)[-1] == "toy" and "both" not in ESTIMATORS and "broken" not in ESTIMATORS


# -- properties over every registered estimator and drawn distributions --------------------------

#: scalar nodes of every registered distribution but those needing event shapes (Categorical, Dirichlet)
SCALAR_DISTS = sorted(name for name, d in DISTRIBUTIONS.items() if d.event_rank == 0)
#: the distributions registered when the tests were collected (other tests register deliberately broken ones)
REGISTERED = sorted(DISTRIBUTIONS)
SHAPES = {"Categorical": (3,), "Dirichlet": (3,)}


@st.composite
def _cases(draw):
    name = draw(st.sampled_from(REGISTERED))
    if name in SHAPES:
        k = SHAPES[name][0]
        key = "probs" if name == "Categorical" else "concentration"
        w = np.asarray(draw(st.lists(st.floats(0.05, 5.0), min_size=k, max_size=k)))
        values = {key: w / w.sum() if name == "Categorical" else w}
    else:
        values = draw(params_for(name, min_scale=1e-2, max_magnitude=1e2))
    return name, values


def _node(name: str, values: dict[str, Any]) -> tuple[str, Any, Any]:
    args = ", ".join(f"{k}={k}" for k in values)
    text = f"E[z, z ~ {name}({args})]"
    p = sg.plan(text, shapes={k: np.shape(v) for k, v in values.items()})
    return text, p, p.node("z")


@settings(max_examples=40, deadline=None)
@given(_cases())
def test_applicable_agrees_with_requires_and_the_planner(case):
    name, values = case
    text, p, node = _node(name, values)
    d = lookup(name)
    states = joint_states(d, node.dist, node.shape)
    listed = {type(s) for s in applicable(d, states=states, capabilities=ALL_CAPABILITIES)}
    for est, cls in ESTIMATORS.items():
        try:
            cls().requires(d, states=states, capabilities=ALL_CAPABILITIES)
            accepted = True
        except PlanError:
            accepted = False
        assert (cls in listed) == accepted, (name, est)
        try:
            sg.plan(text, estimators={"z": est}, shapes={k: np.shape(v) for k, v in values.items()})
            planned = True
        except PlanError as exc:
            planned = False
            if accepted:  # only an estimator that needs a form of cost may refuse this one, by name
                assert cls.cost_form and str(exc).startswith(f"{est}"), (name, est, str(exc))
        assert planned == accepted or (accepted and cls.cost_form), (name, est)
    assert Score in listed  # the score function applies everywhere


def _draw(noise: NoiseSource) -> Any:
    """A node's ``draw(kind, shape, *params)``: one fresh noise stream per call, as the lowering's."""
    streams = iter(range(1 << 10))
    return lambda kind, shape, *params: noise.draw(0, next(streams), kind, tuple(shape), *params)


@settings(max_examples=40, deadline=None)
@given(_cases(), st.sampled_from(["autograd", "torch"]))
def test_facts_match_what_each_estimator_draws(case, backend):
    """scores <=> sample returns log q; enumerates => neither scores nor samples; pathwise =>
    through_sample; piloted => not biased by construction; the value has the node's shape."""
    name, values = case
    _, _, node = _node(name, values)
    d = lookup(name)
    B = get_backend(backend)
    n, shape = 16, tuple(node.shape)
    noise = NoiseSource(B, 0, 0, n)
    for spec in applicable(d, states=joint_states(d, node.dist, node.shape), capabilities=B.capabilities):
        assert not (spec.enumerates and (spec.scores or spec.through_sample)), spec
        assert not spec.pathwise or spec.through_sample, spec
        assert not (spec.piloted and spec.biased_by_construction), spec
        assert spec.variants(temperatures=(0.3,)), spec
        assert type(spec.at_one_sample()).name == spec.name, spec
        if spec.enumerates:
            with pytest.raises(PlanError):
                spec.sample(d, B, {}, None, shape)
            continue
        p = {k: B.asarray(np.asarray(v, dtype=float)[None]) for k, v in values.items()}
        z, logq = spec.sample(d, B, p, _draw(noise), shape)
        assert (logq is not None) == spec.scores, spec
        assert tuple(B.shape(z)) == (n,) + shape, spec
        assert np.all(np.isfinite(B.to_numpy(z))), spec


# -- the relaxation maths, written once on two distribution hooks --------------------------------


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["autograd", "torch"]), st.floats(0.05, 5.0),
       st.lists(st.floats(-4.0, 4.0), min_size=1, max_size=4))
def test_relaxations_are_the_closed_forms_on_the_same_uniforms(backend, tau, logits):
    """On the node's uniform draws ``u``: binary Concrete ``sigmoid((l + log u - log(1 - u)) / tau)``,
    Gumbel-softmax ``softmax((l - log(-log u)) / tau)``; straight-through Gumbel's value is the
    rounding of that sample (``> 1/2``, or the one-hot argmax), straight-through's the plain sample."""
    from stochgrad.estimators import Relaxed, StraightThrough, StraightThroughGumbel

    B, n = get_backend(backend), 64
    lg = np.asarray(logits)
    cases = (("Bernoulli", {"logits": float(lg[0])}, ()), ("Categorical", {"logits": lg}, (len(lg),)))
    for name, values, shape in cases:
        d = lookup(name)
        p = {k: B.asarray(np.asarray(v, dtype=float)[None]) for k, v in values.items()}
        u = B.to_numpy(NoiseSource(B, 3, 0, n).draw(0, 0, "uniform", shape))
        if name == "Bernoulli":
            soft = 1 / (1 + np.exp(-(lg[0] + np.log(u) - np.log1p(-u)) / tau))
            hard = (soft > 0.5).astype(float)
            plain = (u < 1 / (1 + np.exp(-lg[0]))).astype(float)
        else:
            t = (lg - np.log(-np.log(u))) / tau
            soft = np.exp(t - t.max(axis=-1, keepdims=True))
            soft /= soft.sum(axis=-1, keepdims=True)
            hard = np.eye(len(lg))[np.argmax(t, axis=-1)]
            plain = hard
        for spec, want in ((Relaxed(tau), soft), (StraightThroughGumbel(tau), hard), (StraightThrough(), plain)):
            z, logq = spec.sample(d, B, p, _draw(NoiseSource(B, 3, 0, n)), shape)
            assert logq is None
            np.testing.assert_allclose(B.to_numpy(z), want, rtol=1e-9, atol=1e-12, err_msg=f"{name} {spec}")
