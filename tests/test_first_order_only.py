"""Estimators whose surrogate is right to the first derivative only (the ``orders = 1`` fact:
REBAR, RELAX, STL, ARM/DisARM, IndeCateR, MVD, VIMCO, DReG, delta, pathwise_delta, sum-and-sample, the unordered set) refuse a second derivative by name, on
both backends, while a compiled
objective's first derivative is unchanged by the guard: it equals the same objective's gradient
without it (same seed, same noise), bit for bit up to rounding."""

import numpy as np
import pytest
import torch

import stochgrad as sg
from conftest import grad_of
from stochgrad.estimators import ESTIMATORS

# (expression, estimator): each first-order-only estimator on a cost it applies to
CASES = [
    ("E[sum((b - 0.3) ** 2 * w), b ~ Bernoulli(x * c)]", "rebar"),
    ("E[sum((b - 0.3) ** 2 * w), b ~ Bernoulli(x * c)]", "disarm"),
    ("E[sum((b - 0.3) ** 2 * w), b ~ Bernoulli(x * c)]", "arm"),
    ("E[sum((b - 0.3) ** 2 * w), b ~ Categorical(logits=x * c)]", "disarm"),  # the stick-breaking form
    ("E[sum((b - 0.3) ** 2 * w), b ~ Bernoulli(x * c)]", "indecater"),
    ("E[sum((b - 0.3) ** 2 * w), b ~ Categorical(logits=x * c)]", "indecater"),
    ("E[sum((b - 0.3) ** 2 * w), b ~ Categorical(logits=x * c)]", "rebar"),  # the Gumbel-max form
    ("E[sum((b - 0.3) ** 2 * w), b ~ Bernoulli(x * c)]", "sum_and_sample"),
    ("E[sum((b - 0.3) ** 2 * w), b ~ Bernoulli(x * c)]", "unordered_set"),
    ("E[sum(log_prob(Normal(0, 1), z) - log_prob(Normal(x * c, 1.5), z) + w * z), z ~ Normal(x * c, 1.5)]", "stl"),
    ("E[sum((b - 0.3) ** 2 * w), b ~ Bernoulli(x * c)]", "mvd"),
    ("E[logmeanexp(sum(w * z + log_prob(Bernoulli(0.5), z) - log_prob(Bernoulli(x * c), z), axis=-1), axis=0),"
     " z ~ iid(3, Bernoulli(x * c))]", "vimco"),
    ("E[logmeanexp(sum(w * z + log_prob(Normal(0, 1), z) - log_prob(Normal(x * c, 1.5), z), axis=-1), axis=0),"
     " z ~ iid(3, Normal(x * c, 1.5))]", "dreg"),
    ("E[sum((z - 0.3) ** 2 * w + z ** 3), z ~ Normal(x * c, 1.5)]", "delta"),
    ("E[sum((z - 0.3) ** 2 * w + z ** 3), z ~ Normal(x * c, 1.5)]", "pathwise_delta"),
    # relax needs its network (backend-native: indexing and arithmetic only, for both backends)
    ("E[sum((b - 0.3) ** 2 * w), b ~ Bernoulli(x * c)]",
     sg.Relax(surrogate=lambda z: 0.3 * z[:, 0] - 0.2 * z[:, 1] ** 2, learn=False)),
    ("E[sum((b - 0.3) ** 2 * w), b ~ Categorical(logits=x * c)]",
     sg.Relax(surrogate=lambda z: 0.3 * z[:, 0] - 0.2 * z[:, 1] ** 2, learn=False)),
]


def _name(estimator):
    return getattr(estimator, "name", estimator)


CONST = {"c": np.array([0.4, 0.7]), "w": np.array([1.0, -2.0])}
X0 = 0.9


def _objective(text, backend, estimator):
    f = sg.compile(text, backend=backend, n=64, seed=7, estimators={"b" if "b ~" in text else "z": estimator})
    if backend == "torch":
        consts = {k: torch.tensor(v, dtype=torch.float64) for k, v in CONST.items()}
        return lambda x: f(x=x, **consts)
    return lambda x: f(x=x, **CONST)


def test_every_first_order_estimator_is_covered():
    first_order = {name for name, cls in ESTIMATORS.items() if cls.orders == 1}
    assert first_order >= {"rebar", "relax", "stl", "arm", "disarm", "indecater", "mvd", "vimco", "dreg", "delta",
                           "pathwise_delta", "sum_and_sample", "unordered_set"}
    assert first_order <= {_name(est) for _, est in CASES}, "a first-order-only estimator without a case here"


@pytest.mark.parametrize("text, estimator", CASES, ids=[_name(e) for _, e in CASES])
def test_second_derivative_is_refused_by_name(backend, text, estimator):
    f = _objective(text, backend, estimator)
    pattern = rf"no second derivative through {_name(estimator)}, a first-order estimator"
    with pytest.raises(sg.PlanError, match=pattern):
        if backend == "torch":
            x = torch.tensor(X0, dtype=torch.float64, requires_grad=True)
            (g,) = torch.autograd.grad(f(x), x, create_graph=True)
            torch.autograd.grad(g, x)
        else:
            grad_of(backend)(grad_of(backend)(f))(X0)


@pytest.mark.parametrize("text, estimator", CASES, ids=[_name(e) for _, e in CASES])
def test_first_derivative_is_the_estimate_runs(backend, text, estimator):
    """The compiled objective's gradient (guarded) against ``sg.estimate``'s (a first-order run, no
    guard) at the same seed: the same estimator on the same noise."""
    var = "b" if "b ~" in text else "z"
    f = _objective(text, backend, estimator)
    if backend == "torch":
        x = torch.tensor(X0, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(f(x), x)
        g = g.item()
    else:
        g = float(grad_of(backend)(f)(X0))
    r = sg.estimate(text, {"x": X0, **CONST}, n=64, seed=7, backend=backend, estimators={var: estimator})
    assert np.isfinite(g) and g == pytest.approx(float(r.grad["x"]), rel=1e-9, abs=1e-12)
