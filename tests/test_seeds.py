"""Seeds: every noise stream is a hash of (seed words, call, node, stream, kind, block).

The call index of a compiled objective is its own word (not added to the seed), so objectives
with seeds s and s + 1 share no call's noise; a seed of any size enters with all its 64-bit words,
so s and 2**64 + s differ; estimate, compile and plan validate seeds with one function."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import stochgrad as sg
from stochgrad.noise import PILOT, REPLICATE, check_seed, derive_seed, stream_seed

VALUE = "E[z, z ~ Normal(mu, 1)]"  # the value of a call is the mean of its noise
CONFIGS = [("autograd", {}), ("torch", {}), ("torch", {"dtype": "float32"})]
SEEDS = st.one_of(st.integers(0, 2**16), st.integers(2**62, 2**66), st.integers(0, 2**200))


def _param(backend, options, x=0.0):
    if backend == "torch":
        return torch.tensor(x, dtype=torch.float32 if options else torch.float64, requires_grad=True)
    return np.float64(x)


def _calls(seed, backend, options, k, n=32):
    f = sg.compile(VALUE, n=n, backend=backend, seed=seed, backend_options=options)
    values = [f(mu=_param(backend, options)) for _ in range(k)]
    return [float(v.detach()) if backend == "torch" else float(v) for v in values]


@pytest.mark.parametrize("backend, options", CONFIGS)
@given(seed=SEEDS)
@settings(max_examples=8)
def test_neighbouring_seeds_share_no_calls_noise(backend, options, seed):
    """Old defect: call k of seed s + 1 was call k + 1 of seed s (seed + call).  Now no call of one
    objective repeats any call of the other, the shifted pairs included; the same seed repeats bitwise."""
    a, b = _calls(seed, backend, options, 4), _calls(seed + 1, backend, options, 4)
    assert all(a[k + 1] != b[k] for k in range(3))
    assert not set(a) & set(b) and len(set(a)) == 4
    assert _calls(seed, backend, options, 4) == a


@pytest.mark.parametrize("backend, options", CONFIGS)
@given(seed=st.integers(0, 2**64 - 1))
@settings(max_examples=6)
def test_big_seeds_are_folded_in_full(backend, options, seed):
    """Old defect: seeds were reduced mod 2**64, so s and 2**64 + s gave the same numbers."""
    def run(s):
        r = sg.estimate(VALUE, {"mu": 0.5}, n=200, backend=backend, seed=s, backend_options=options)
        return r.value, r.grad["mu"], r.seed

    same = run(seed)
    assert run(seed) == same  # bitwise
    for other in (seed + 2**64, seed + 2**128, seed * 2**64, seed + 2**64 * 2**64 * 3):
        if other != seed:
            assert run(other)[0] != same[0], other
    assert run(2**64 + seed)[2] == 2**64 + seed  # the seed reported is the one given, in full


def test_the_call_index_is_its_own_word():
    words = {stream_seed(s, call, 0, 0, "normal", 0) for s in range(6) for call in range(6)}
    assert len(words) == 36  # (s, k) and (s + 1, k - 1) no longer meet
    assert stream_seed(5, 0, 0, 0, "normal", 0) != stream_seed(5 + 2**64, 0, 0, 0, "normal", 0)
    derived = {derive_seed(s, tag, i) for s in range(4) for tag in (PILOT, REPLICATE) for i in range(4)}
    assert len(derived) == 32 and not derived & set(range(10_000))


def test_chunked_equals_unchunked_with_big_seeds(backend):
    from stochgrad.noise import BLOCK

    n, seed = 2 * BLOCK + 7, 2**80 + 3
    whole = sg.estimate(VALUE, {"mu": 0.1}, n=n, backend=backend, seed=seed, estimators={"z": "score"}, chunk_size=n)
    parts = sg.estimate(VALUE, {"mu": 0.1}, n=n, backend=backend, seed=seed, estimators={"z": "score"},
                        chunk_size=BLOCK)
    np.testing.assert_allclose(parts.grad["mu"], whole.grad["mu"], rtol=1e-12)
    np.testing.assert_allclose(parts.value, whole.value, rtol=1e-12)


BAD = [True, False, 1.0, 2.5, -1, -2**70, "3", [3], np.float64(3.0), np.bool_(True)]


@pytest.mark.parametrize("bad", BAD, ids=repr)
def test_bad_seeds_are_refused_by_name_everywhere(bad):
    message = r"seed must be a non-negative integer, got "
    with pytest.raises(sg.ValidationError, match="estimate: " + message):
        sg.estimate(VALUE, {"mu": 0.0}, n=4, seed=bad)
    with pytest.raises(sg.ValidationError, match="compile: " + message):
        sg.compile(VALUE, n=4, seed=bad)
    with pytest.raises(sg.ValidationError, match="plan: " + message):
        sg.plan(VALUE, params={"mu": 0.0}, seed=bad)
    with pytest.raises(sg.ValidationError, match=message):
        check_seed(bad)


def test_numpy_integer_seeds_are_seeds(backend):
    a = sg.estimate(VALUE, {"mu": 0.0}, n=50, backend=backend, seed=np.int64(7))
    b = sg.estimate(VALUE, {"mu": 0.0}, n=50, backend=backend, seed=7)
    assert (a.value, a.grad, type(a.seed)) == (b.value, b.grad, int)
    assert sg.compile(VALUE, n=4, seed=np.uint64(2**63)).seed == 2**63
