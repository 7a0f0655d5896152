"""The per-shape and per-structure specialisations of a program change no number.

* An expectation with score terms and no enumerated node is built as a step with the pairing of
  nodes, terms, plates and baselines resolved once (``surrogate._unenumerated``); for Hypothesis-drawn
  models, estimators, parameter values, sample counts and seeds, its value and every gradient equal,
  bit for bit, those of the general :func:`stochgrad.surrogate.expect` on the same noise, in DiCE and
  in first-order form, with and without a declared plate.
* A random node remembers, per set of parameter shapes, whether its parameters align as they are and
  the shape of one sample: one program run on parameters of changing shapes gives what a fresh
  program gives for each, and a shape mismatch is still refused on every run.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stochgrad import surrogate
from stochgrad.backend import get_backend
from stochgrad.baselines import BaselineState
from stochgrad.errors import StochgradError
from stochgrad.noise import NoiseSource
from stochgrad.planner import plan
from stochgrad.program import Frame
from stochgrad.program.compile import Program
from stochgrad.sampleaxis import with_sample_axis

torch = pytest.importorskip("torch")

_MODELS = [  # (text, {variable: family}, {parameter: shape}, plate-able)
    ("E[(b - c)**2, b ~ Bernoulli(logits=l)]", {"b": "discrete"}, {"l": (), "c": ()}, False),
    (
        "E[x * y + x * mu, x ~ Bernoulli(p), y ~ Bernoulli(q)]",
        {"x": "discrete", "y": "discrete"},
        {"p": (), "q": (), "mu": ()},
        False,
    ),
    (
        "E[(x + y - mu)**2, x ~ Bernoulli(logits=a), y ~ Normal(mu * x, 1)]",
        {"x": "discrete", "y": "continuous"},
        {"a": (), "mu": ()},
        False,
    ),
    (
        "E[E[x * y, y ~ Bernoulli(q)] + x, x ~ Bernoulli(p)]",
        {"x": "discrete", "y": "discrete"},
        {"p": (), "q": ()},
        False,
    ),
    (
        "E[x * mu + y**2 - x * y, x ~ Normal(mu, 1), y ~ Bernoulli(p)]",
        {"x": "continuous", "y": "discrete"},
        {"mu": (), "p": ()},
        False,
    ),
    ("E[(x - t)**2, x ~ Bernoulli(logits=a)]", {"x": "discrete"}, {"a": (3,), "t": (3,)}, True),
    (
        "E[sum((x - t)**2) + sum(x) * mu, x ~ Bernoulli(logits=a)]",
        {"x": "discrete"},
        {"a": (3,), "t": (3,), "mu": ()},
        False,
    ),
    (
        "E[mean(z * w * g), g ~ Bernoulli(probs=p), z ~ Bernoulli(logits=a)]",
        {"g": "discrete", "z": "discrete"},
        {"p": (), "a": (4,), "w": (4,)},
        False,
    ),
]
_CHOICES = {
    "discrete": ["score", "score:baseline=none", "score:baseline=ema"],
    "continuous": ["pathwise", "score", "score:baseline=none"],
}


def _values(data, shapes):
    out = {}
    for k, shape in shapes.items():
        low, high = (0.05, 0.95) if k in ("p", "q") else (-2.0, 2.0)
        size = int(np.prod(shape)) if shape else 1
        xs = data.draw(st.lists(st.floats(low, high), min_size=size, max_size=size), label=k)
        out[k] = np.array(xs).reshape(shape) if shape else xs[0]
    return out


def _generic(e, nodes, terms):
    return lambda fr, env: surrogate.expect(fr, e, env, nodes, terms, [False] * len(e.nodes))


def _surrogate(root, params, seed, n, first_order, batch_axes):
    B = get_backend("torch")
    leaves = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    state, prog = BaselineState(), Program(root)
    for call in range(2):  # the second call sees the moving averages after the first
        frame = Frame(
            B,
            with_sample_axis(B, leaves),
            NoiseSource(B, seed, 0, n, blocked=False, call=call),
            first_order=first_order,
            batch_axes=batch_axes,
            baselines=state,
        )
        out = prog.run(frame)
    total = out.sum()
    grads = torch.autograd.grad(total, list(leaves.values()), allow_unused=True)
    return out.detach().numpy(), [None if g is None else g.numpy() for g in grads]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_unenumerated_step_equals_the_general_surrogate(data):
    text, families, shapes, plated = data.draw(st.sampled_from(_MODELS))
    est = {v: data.draw(st.sampled_from(_CHOICES[f]), label=v) for v, f in families.items()}
    params = _values(data, shapes)
    seed, n = data.draw(st.integers(0, 2**40), label="seed"), data.draw(st.integers(2, 40), label="n")
    first_order = data.draw(st.booleans(), label="first_order")
    batch_axes = data.draw(st.sampled_from([0, 1]) if plated else st.just(0), label="batch_axes")
    p = plan(text, shapes=shapes, estimators=est)
    assert any(any(x.boxes) for x in _expects(p.root))  # the specialised path is the one under test
    value, grads = _surrogate(p.root, params, seed, n, first_order, batch_axes)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(surrogate, "_unenumerated", _generic)
        value_ref, grads_ref = _surrogate(p.root, params, seed, n, first_order, batch_axes)
    np.testing.assert_array_equal(value, value_ref)
    for g, ref in zip(grads, grads_ref):
        assert (g is None) == (ref is None)
        if g is not None:
            np.testing.assert_array_equal(g, ref)


def _expects(e):
    from stochgrad.planned import PlannedExpect

    found = [e] if isinstance(e, PlannedExpect) else []
    for c in e.children():
        found += _expects(c)
    return found


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.sampled_from([(), (1,), (3,), (2, 3), (4, 1)]), min_size=1, max_size=6), n=st.integers(1, 9))
def test_a_node_remembers_its_parameter_shapes_exactly(sizes, n):
    """One program (as a chunked estimate or a reused objective runs it) on parameters of changing shapes
    gives, for each, what a fresh program gives; incompatible shapes are refused on every run."""
    B = get_backend("torch")
    root = plan("E[z * w, z ~ Normal(mu, sigma)]", shapes={"mu": (), "sigma": (), "w": ()}).root
    shared = Program(root)
    rng = np.random.default_rng(len(sizes))
    for mu_shape in sizes:
        for sigma_shape in ((), (3,)):
            params = {"mu": rng.normal(size=mu_shape), "sigma": rng.uniform(0.5, 2.0, size=sigma_shape), "w": 2.0}
            native = with_sample_axis(B, {k: B.asarray(np.asarray(v, dtype=float)) for k, v in params.items()})
            results = []
            for prog in (shared, Program(root)):
                try:
                    results.append(B.to_numpy(prog.run(Frame(B, native, NoiseSource(B, 3, 0, n, blocked=False)))))
                except StochgradError as err:
                    results.append(str(err))
            if isinstance(results[1], str):
                assert results[0] == results[1] and "shape" in results[1].lower()
            else:
                np.testing.assert_array_equal(results[0], results[1])
