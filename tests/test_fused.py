"""sg.compile(..., fuse=True): the same objective through torch.compile.

A fused call must see exactly the noise of the eager call with the same seed, so values and
gradients agree to the rounding of a different summation order; what cannot be fused is refused
with a clear error, and parameters are still checked.  Each test compiles once (a few seconds).
"""

import pytest
import torch

import stochgrad as sg

from stochgrad.backends.torch import cxx_compiler

F64 = torch.float64
# torch.compile writes C++ for the CPU; without a compiler fuse=True refuses (tested below), and the
# equality tests cannot run
needs_cxx = pytest.mark.skipif(cxx_compiler() is None, reason="torch.compile on the CPU needs a C++ compiler")


def _t(x):
    return torch.tensor(x, dtype=F64, requires_grad=True)


def _same_calls(text, make_params, calls=3, **options):
    """Values and gradients of `calls` successive calls, fused and eager, from the same seed."""
    fused = sg.compile(text, backend="torch", seed=5, fuse=True, **options)
    eager = sg.compile(text, backend="torch", seed=5, **options)
    for _ in range(calls):
        out = []
        for f in (fused, eager):
            params = make_params()
            leaves = [v for v in params.values() if v.requires_grad]
            value = f(**params)
            out.append((value.detach(), torch.autograd.grad(value, leaves)))
        (v1, g1), (v2, g2) = out
        torch.testing.assert_close(v1, v2, rtol=1e-10, atol=1e-12)
        for a, b in zip(g1, g2):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    return fused


@needs_cxx
def test_fused_pathwise_equals_eager():
    f = _same_calls("E[z**2, z ~ Normal(mu, sigma)]", lambda: {"mu": _t(1.5), "sigma": _t(0.7)}, n=4096)
    assert len(f._fused) == 1  # compiled once for these shapes, reused by later calls


@needs_cxx
def test_fused_score_with_leave_one_out_and_a_module_equals_eager():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1).to(F64)
    loglik = sg.UserFunction(lambda z: net(z).squeeze(-1), name="net")
    expr = sg.parse("E[net(z), z ~ Bernoulli(logits=l)] - sum(KL(Bernoulli(logits=l) || Bernoulli(0.3)))",
                    functions={"net": loglik})
    _same_calls(expr, lambda: {"l": _t([0.2, -1.0, 2.0])}, n=64, estimators={"z": "score"})
    # the module's parameters receive the same gradient through the fused objective
    grads = []
    for fuse in (True, False):
        f = sg.compile(expr, backend="torch", n=64, seed=9, estimators={"z": "score"}, fuse=fuse)
        for _ in range(2):
            net.zero_grad()
            f(l=_t([0.2, -1.0, 2.0])).backward()
        grads.append(net.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)


@needs_cxx
def test_fused_relaxed_categorical_equals_eager():
    w = torch.arange(4, dtype=F64)
    _same_calls("E[sum(w * y), y ~ Categorical(logits=l)]", lambda: {"l": _t([0.0, 0.5, -0.5, 1.0]), "w": w},
                n=256, estimators={"y": "relaxed:temperature=0.5"})


@needs_cxx
def test_fused_calls_still_check_parameters():
    f = sg.compile("E[z**2, z ~ Normal(mu, sigma)]", backend="torch", n=16, seed=0, fuse=True)
    for _ in range(2):
        f(mu=_t(0.0), sigma=_t(1.0))
    with pytest.raises(sg.StochgradError, match=r"^z ~ Normal\(mu, sigma\): parameter .scale. \(given as `sigma`\) must be > 0"):
        f(mu=_t(0.0), sigma=_t(-1.0))
    kl = sg.compile("KL(Normal(m, s) || Normal(0, 1)) + E[x, x ~ Normal(m, 1)]", backend="torch", n=4, seed=0, fuse=True)
    for _ in range(2):
        kl(m=_t(0.0), s=_t(1.0))
    with pytest.raises(sg.StochgradError, match=r"^KL\(Normal\(m, s\) \|\| Normal\(0, 1\)\): Normal\(m, s\): parameter"):
        kl(m=_t(0.0), s=_t(float("nan")))


def test_fuse_without_a_compiler_says_so(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(sg.BackendError, match="needs a C\\+\\+ compiler"):
        sg.compile("E[z**2, z ~ Normal(mu, 1)]", backend="torch", n=4, fuse=True)


def test_fuse_needs_a_backend_that_can():
    with pytest.raises(sg.BackendError, match="autograd backend cannot fuse"):
        sg.compile("E[z**2, z ~ Normal(mu, 1)]", backend="autograd", n=4, fuse=True)
    with pytest.raises(sg.ValidationError, match="fuse must be True or False"):
        sg.compile("E[z, z ~ Normal(mu, 1)]", backend="torch", n=4, fuse="yes")


@needs_cxx
def test_fuse_refuses_what_it_cannot_compile():
    poisson = sg.compile("E[k**2, k ~ Poisson(rate)]", backend="torch", n=8, seed=0, fuse=True)
    with pytest.raises(sg.PlanError, match="'poisson' noise depends on parameter values"):
        poisson(rate=_t(2.0))
    ema = sg.compile("E[b, b ~ Bernoulli(logits=l)]", backend="torch", n=8, seed=0, fuse=True,
                     estimators={"b": "score:baseline=ema"})
    with pytest.raises(sg.PlanError, match="running state of b"):
        ema(l=_t(0.0))
    assert len(ema.baseline_state) == 0  # refused before the eager call touched the objective's state


@needs_cxx
def test_fused_enumeration_with_score_and_pathwise_nodes_equals_eager():
    """Exact enumeration tiles the samples per state (its support is made once, outside the trace);
    a score node after it and a pathwise node share the expectation."""
    _same_calls("E[(x - y)**2 + z**2 + argmax(c), y ~ Bernoulli(p), x ~ Normal(mu, 1), z ~ Normal(mu, sigma),"
                " c ~ Categorical(logits=l)]",
                lambda: {"p": _t(0.3), "mu": _t(0.5), "sigma": _t(1.5), "l": _t([0.3, -0.2, 0.1])},
                n=128, estimators={"z": "score"})
