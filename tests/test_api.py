"""Public API contract: parameters, backends, determinism, chunking, result shapes."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy.stats import chi2

import stochgrad as sg
from stochgrad.noise import BLOCK

NORMAL_SQ = "E[z**2, z ~ Normal(mu, sigma)]"


def test_seed_example_from_the_issue(backend):
    r = sg.estimate(sg.parse(NORMAL_SQ), {"mu": 12.0, "sigma": 42.0}, n=100_000, backend=backend, seed=0)
    assert r.n == 100_000 and r.backend == backend and r.seed == 0
    assert isinstance(r.grad["mu"], float) and isinstance(r.stderr["sigma"], float)
    assert abs(r.grad["mu"] - 24) < 5 * r.stderr["mu"]
    assert abs(r.grad["sigma"] - 84) < 5 * r.stderr["sigma"]
    assert str(r.plan) == "z ~ Normal(mu, sigma): pathwise \u2014 reparameterizable, cost differentiable in z [unbiased]"


def test_same_seed_identical_different_seed_different(backend):
    a = sg.estimate(NORMAL_SQ, {"mu": 1.0, "sigma": 2.0}, n=5000, backend=backend, seed=123)
    b = sg.estimate(NORMAL_SQ, {"mu": 1.0, "sigma": 2.0}, n=5000, backend=backend, seed=123)
    c = sg.estimate(NORMAL_SQ, {"mu": 1.0, "sigma": 2.0}, n=5000, backend=backend, seed=124)
    assert (a.value, a.grad, a.stderr) == (b.value, b.grad, b.stderr)
    assert a.grad["mu"] != c.grad["mu"]
    chunked = [sg.estimate(NORMAL_SQ, {"mu": 1.0, "sigma": 2.0}, n=2 * BLOCK + 3, backend=backend, seed=5,
                           chunk_size=BLOCK, estimators={"z": "score"}) for _ in range(2)]
    assert (chunked[0].grad, chunked[0].stderr) == (chunked[1].grad, chunked[1].stderr)  # bitwise


def test_different_seeds_are_independent(backend):
    # If seeds gave independent unbiased estimates, sum_k z_k^2 over 30 seeds is chi-square(30).
    zs = []
    for seed in range(30):
        r = sg.estimate(NORMAL_SQ, {"mu": 1.0, "sigma": 2.0}, n=2000, backend=backend, seed=seed)
        zs.append((r.grad["mu"] - 2.0) / r.stderr["mu"])
    stat = float(np.sum(np.square(zs)))
    assert chi2.ppf(1e-4, 30) < stat < chi2.ppf(1 - 1e-4, 30), stat


@pytest.mark.parametrize("text, overrides", [
    (NORMAL_SQ, {}),
    (NORMAL_SQ, {"z": sg.Score(baseline=None)}),
    (NORMAL_SQ, {"z": "score"}),  # leave-one-out within noise blocks, whatever the chunks
    ("E[(x - y)**2 + z**2, y ~ Bernoulli(p), x ~ Poisson(mu**2 + y), z ~ Normal(mu, sigma)]",
     {"z": "score"}),  # enumeration, then leave-one-out score nodes
])
def test_chunked_run_equals_unchunked(backend, text, overrides):
    n = 3 * BLOCK + 17
    params = {"mu": np.array([0.5, -1.0]), "sigma": 1.5}
    if "p" in sg.parameters(sg.parse(text)):
        params["p"] = 0.3
    whole = sg.estimate(text, params, n=n, backend=backend, seed=9, estimators=overrides, chunk_size=n)
    parts = sg.estimate(text, params, n=n, backend=backend, seed=9, estimators=overrides, chunk_size=BLOCK)
    assert whole.chunk_size == n and parts.chunk_size == BLOCK
    np.testing.assert_allclose(parts.value, whole.value, rtol=1e-10)
    np.testing.assert_allclose(parts.value_stderr, whole.value_stderr, rtol=1e-8)
    for k in params:
        np.testing.assert_allclose(parts.grad[k], whole.grad[k], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(parts.stderr[k], whole.stderr[k], rtol=1e-8)


@pytest.mark.parametrize("count, copies", [(2 * 4 + 3, 1), (2 * 4 + 3, 3), (4 + 1, 1), (3, 2)])
def test_leave_one_out_groups_are_noise_blocks(backend, count, copies):
    """Each sample's baseline is the mean cost of the other samples of its block (block 4 here),
    over every enumeration copy; a block of one sample gets 0.  Checked against a direct loop."""
    from stochgrad.backend import get_backend
    from stochgrad.estimators import leave_one_out

    B, block = get_backend(backend), 4
    cost = np.random.default_rng(count + copies).normal(size=(copies * count, 2))
    got = B.to_numpy(leave_one_out(B, B.asarray(cost), count, block))
    want = np.zeros_like(cost)
    for i in range(copies * count):
        group = [j for j in range(copies * count) if (j % count) // block == (i % count) // block and j != i]
        want[i] = cost[group].mean(axis=0) if group else 0.0
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_a_last_noise_block_of_one_sample_is_fine(backend):
    """n = BLOCK + 1: the last sample's leave-one-out group is itself alone, so it has no baseline;
    the estimate stays finite and unbiased, and chunked equals unchunked."""
    n = BLOCK + 1
    whole = sg.estimate(NORMAL_SQ, {"mu": 1.0, "sigma": 2.0}, n=n, backend=backend, seed=4, estimators={"z": "score"},
                        chunk_size=2 * BLOCK)
    parts = sg.estimate(NORMAL_SQ, {"mu": 1.0, "sigma": 2.0}, n=n, backend=backend, seed=4, estimators={"z": "score"},
                        chunk_size=BLOCK)
    for k, exact in (("mu", 2.0), ("sigma", 4.0)):
        assert np.isfinite(whole.grad[k]) and abs(whole.grad[k] - exact) < 6 * whole.stderr[k]
        np.testing.assert_allclose(parts.grad[k], whole.grad[k], rtol=1e-10)


def test_automatic_chunks_hold_a_fixed_number_of_entries():
    """Without chunk_size, a chunk holds about CHUNK_ENTRIES entries of the widest per-sample value
    (whole noise blocks, at least one); the estimate is the same as with any other chunking."""
    from stochgrad.api import CHUNK_ENTRIES

    scalar = sg.estimate(NORMAL_SQ, {"mu": 0.0, "sigma": 1.0}, n=2 * CHUNK_ENTRIES, seed=0)
    assert scalar.chunk_size == CHUNK_ENTRIES
    wide = sg.estimate("E[sum(w * y), y ~ Categorical(logits=l)]", {"l": np.zeros(10), "w": np.arange(10.0)},
                       n=3 * BLOCK, seed=0, estimators={"y": "relaxed"})
    assert wide.chunk_size == max(BLOCK, CHUNK_ENTRIES // 10 // BLOCK * BLOCK)
    whole = sg.estimate(NORMAL_SQ, {"mu": 0.0, "sigma": 1.0}, n=2 * CHUNK_ENTRIES, seed=0, chunk_size=2 * CHUNK_ENTRIES)
    assert scalar.grad["mu"] == pytest.approx(whole.grad["mu"], rel=1e-12, abs=1e-12)


def test_chunk_size_rounds_to_noise_blocks():
    r = sg.estimate(NORMAL_SQ, {"mu": 0.0, "sigma": 1.0}, n=2 * BLOCK + 5, seed=0, chunk_size=BLOCK + 100)
    assert r.chunk_size == BLOCK


@pytest.mark.parametrize(
    "text, params, overrides",
    [
        (NORMAL_SQ, {"mu": 1.0, "sigma": 2.0}, {}),
        ("E[sin(z) * x, z ~ Weibull(lam, k), x ~ Gumbel(z, 2)]", {"lam": 1.5, "k": 2.0}, {"x": "score"}),
        ("E[z > 0.3, z ~ Kumaraswamy(a, b)]", {"a": 2.0, "b": np.array([1.0, 3.0])}, {}),
        ("E[log1p(abs(z)) + tanh(z) * sigmoid(z), z ~ Cauchy(m, s)]", {"m": 0.1, "s": 0.5}, {}),
    ],
)
def test_backends_agree_on_identical_noise(text, params, overrides):
    """In float64 on the CPU both backends draw normal and uniform noise from numpy's PCG64, so the
    same seed gives the same numbers up to rounding (n spans two noise blocks)."""
    a = sg.estimate(text, params, n=BLOCK + 3000, backend="autograd", seed=5, estimators=overrides)
    t = sg.estimate(text, params, n=BLOCK + 3000, backend="torch", seed=5, estimators=overrides)
    np.testing.assert_allclose(t.value, a.value, rtol=1e-9)
    for k in params:
        np.testing.assert_allclose(t.grad[k], a.grad[k], rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(t.stderr[k], a.stderr[k], rtol=1e-8, atol=1e-12)


def test_parameter_errors():
    with pytest.raises(sg.ValidationError, match=r"parameter 'sigma' is missing; the expression needs: mu, sigma"):
        sg.estimate(NORMAL_SQ, {"mu": 1.0}, n=10)
    with pytest.raises(sg.ValidationError, match=r"unknown parameter 'sigm' \(did you mean 'sigma'\?\); the expression's parameters are: mu, sigma"):
        sg.estimate(NORMAL_SQ, {"mu": 1.0, "sigma": 1.0, "sigm": 2.0}, n=10)
    with pytest.raises(sg.ValidationError, match=r"parameter 'mu' must be finite"):
        sg.estimate(NORMAL_SQ, {"mu": float("nan"), "sigma": 1.0}, n=10)
    with pytest.raises(sg.ValidationError, match=r"parameter 'mu' must be a number or an array of numbers"):
        sg.estimate(NORMAL_SQ, {"mu": "twelve", "sigma": 1.0}, n=10)
    # shapes are checked per node and per operation (not across the whole expression)
    with pytest.raises(sg.StochgradError, match=r"shapes \(3,\) and \(2,\) do not broadcast in `Normal\(mu, sigma\)`"):
        sg.estimate(NORMAL_SQ, {"mu": np.zeros(3), "sigma": np.ones(2)}, n=10)


def test_constraint_errors_name_parameter_source_and_value(backend):
    with pytest.raises(sg.StochgradError, match=r"z ~ Normal\(mu, sigma\): parameter 'scale' \(given as `sigma`\) must be > 0 and finite, got -1.0"):
        sg.estimate(NORMAL_SQ, {"mu": 1.0, "sigma": np.array([1.0, -1.0])}, n=10, backend=backend)
    with pytest.raises(sg.StochgradError, match=r"z ~ Uniform\(a, b\): parameter 'high' must be > 'low', got low=2.0, high=1.0"):
        sg.estimate("E[z, z ~ Uniform(a, b)]", {"a": 2.0, "b": 1.0}, n=10, backend=backend)
    with pytest.raises(sg.StochgradError, match=r"x ~ Exponential\(z\): parameter 'rate' \(given as `z`\) must be > 0"):
        sg.estimate("E[x, z ~ Normal(0, 1), x ~ Exponential(z)]", {}, n=100, backend=backend, seed=0)


def test_option_errors():
    with pytest.raises(sg.ValidationError, match=r"n \(the number of samples\) must be an integer >= 1, got 0"):
        sg.estimate(NORMAL_SQ, {"mu": 1.0, "sigma": 1.0}, n=0)
    with pytest.raises(sg.ValidationError, match=r"seed must be a non-negative integer, got -3"):
        sg.estimate(NORMAL_SQ, {"mu": 1.0, "sigma": 1.0}, n=10, seed=-3)
    with pytest.raises(sg.ValidationError, match=r"chunk_size must be an integer >= 1, got 0"):
        sg.estimate(NORMAL_SQ, {"mu": 1.0, "sigma": 1.0}, n=10, chunk_size=0)
    with pytest.raises(sg.StochgradError, match=r"axis 2 is out of range for a value with 1 axes"):
        sg.estimate("E[sum(z, axis=2), z ~ Normal(mu, 1)]", {"mu": np.zeros(3)}, n=10)


def test_backend_registry_errors():
    with pytest.raises(sg.BackendError, match=r"unknown backend 'troch' \(did you mean 'torch'\?\); available: autograd, jax, torch"):
        sg.get_backend("troch")
    sg.register_backend("jaxish", "stochgrad_no_such_module:Backend")
    with pytest.raises(sg.BackendError, match=r"backend 'jaxish' needs stochgrad_no_such_module, which is not installed"):
        sg.get_backend("jaxish")
    with pytest.raises(sg.BackendError, match=r"backend 'torch' does not accept options \['colour'\]"):
        sg.get_backend("torch", colour="red")


def test_default_backend_from_environment(monkeypatch):
    monkeypatch.setenv("STOCHGRAD_BACKEND", "torch")
    assert sg.estimate(NORMAL_SQ, {"mu": 1.0, "sigma": 1.0}, n=10, seed=0).backend == "torch"
    monkeypatch.delenv("STOCHGRAD_BACKEND")
    assert sg.estimate(NORMAL_SQ, {"mu": 1.0, "sigma": 1.0}, n=10, seed=0).backend == "autograd"


def test_torch_dtype_and_device_options():
    r = sg.estimate(NORMAL_SQ, {"mu": 1.0, "sigma": 1.0}, n=20_000, backend="torch", seed=0,
                    backend_options={"dtype": "float32", "device": "cpu"})
    assert abs(r.grad["mu"] - 2.0) < 6 * r.stderr["mu"]


def test_torch_device_errors_name_the_device():
    torch = pytest.importorskip("torch")
    cases = [("cdua", r"device 'cdua' is not a torch device")]
    if torch.cuda.is_available():
        cases.append(("cuda:99", r"device 'cuda:99': there are \d+ CUDA devices"))
    else:
        cases.append(("cuda", r"device 'cuda': this torch \(.*\) sees no CUDA device"))
    for device, message in cases:
        with pytest.raises(sg.BackendError, match=message):
            sg.estimate(NORMAL_SQ, {"mu": 1.0, "sigma": 1.0}, n=10, backend="torch", backend_options={"device": device})


def test_backends_implement_every_primitive():
    from stochgrad.backend import PRIMITIVES
    from stochgrad.functions import FUNCTIONS

    needed = {f.primitive for f in FUNCTIONS.values() if f.primitive}
    assert needed <= PRIMITIVES
    for name in sg.available_backends():
        if name in ("autograd", "torch"):
            assert set(sg.get_backend(name).fn) == PRIMITIVES


def test_core_imports_without_any_framework():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None
        sys.modules["autograd"] = None
        import stochgrad as sg
        print(sg.plan("E[z > 0, z ~ Normal(mu, 1)]"))
        try:
            sg.estimate("E[z, z ~ Normal(mu, 1)]", {"mu": 0.0}, n=10, backend="torch")
        except sg.BackendError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "z ~ Normal(mu, 1): score" in out
    assert "backend 'torch' needs torch, which is not installed: pip install torch" in out


def test_a_missing_dependency_of_a_backend_is_named():
    code = (
        "import sys; sys.modules['scipy'] = None\n"
        "import stochgrad as sg\n"
        "try:\n    sg.get_backend('autograd')\nexcept sg.BackendError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "backend 'autograd' needs scipy, which is not installed: pip install scipy  (or: pip install 'stochgrad[autograd]')" in out


def test_estimate_prints_value_and_gradients():
    r = sg.estimate(NORMAL_SQ, {"mu": 1.0, "sigma": 1.0}, n=100, seed=0)
    lines = str(r).splitlines()
    assert lines[0].startswith("value = ") and lines[1].startswith("d/dmu = ") and lines[2].startswith("d/dsigma = ")


@pytest.mark.parametrize("backend", ["autograd", "torch"])
def test_wrt_differentiates_only_the_named_parameters(backend):
    """Parameters left out of wrt are constants: their gradients are not computed, and the others'
    are exactly those of the full run (same seed, same noise)."""
    text = "E[(z - m)**2, z ~ Normal(mu, sigma)]"
    params = {"mu": np.array([0.5, -1.0]), "sigma": 1.5, "m": 0.25}
    full = sg.estimate(text, params, n=5000, backend=backend, seed=3)
    part = sg.estimate(text, params, n=5000, backend=backend, seed=3, wrt=["mu"])
    assert set(part.grad) == set(part.stderr) == {"mu"}
    np.testing.assert_allclose(part.grad["mu"], full.grad["mu"], rtol=1e-12)
    np.testing.assert_allclose(part.stderr["mu"], full.stderr["mu"], rtol=1e-10)
    assert part.value == pytest.approx(full.value, rel=1e-12)
    # d/dmu E[(z - m)^2] = 2 (mu - m) per entry, summed value: within 6 standard errors
    assert np.all(np.abs(part.grad["mu"] - 2 * (params["mu"] - 0.25)) < 6 * part.stderr["mu"])


def test_wrt_names_must_be_parameters():
    with pytest.raises(sg.ValidationError, match=r"wrt names 'nu'.*parameters are: mu, sigma"):
        sg.estimate(NORMAL_SQ, {"mu": 1.0, "sigma": 1.0}, n=10, wrt=["nu"])


@pytest.mark.parametrize("kind", ["normal", "uniform"])
def test_noise_filled_in_place_equals_the_blocks_drawn_one_by_one(backend, kind):
    """Backends fill multi-block noise into one array; the numbers must be exactly those of the
    per-block draws (what a run chunked at one block sees), bit for bit."""
    from stochgrad.backend import Backend, get_backend

    B = get_backend(backend)
    counts = [BLOCK, BLOCK, 17]
    seeds = [11, 12, 13]
    filled = B.to_numpy(B.noise_blocks(kind, [B.generator(s) for s in seeds], counts, (2,)))
    parts = np.concatenate([B.to_numpy(B.noise(kind, B.generator(s), (c, 2))) for s, c in zip(seeds, counts)])
    generic = B.to_numpy(Backend.noise_blocks(B, kind, [B.generator(s) for s in seeds], counts, (2,)))
    assert filled.shape == (2 * BLOCK + 17, 2)
    np.testing.assert_array_equal(filled, parts)
    np.testing.assert_array_equal(generic, parts)
    if kind == "uniform":
        assert 0 < filled.min() and filled.max() < 1


def test_torch_noise_off_the_float64_cpu_path_comes_from_torch():
    """float32 (and CUDA) draw with torch's own generator: deterministic per seed, and standard."""
    import torch
    from scipy.stats import kstest

    from stochgrad.backend import get_backend

    B = get_backend("torch", dtype="float32")
    g = B.generator(3)
    assert isinstance(g, torch.Generator)
    x = B.noise("normal", g, (20000,))
    assert x.dtype == torch.float32
    np.testing.assert_array_equal(B.to_numpy(x), B.to_numpy(B.noise("normal", B.generator(3), (20000,))))
    assert kstest(B.to_numpy(x), "norm").pvalue > 1e-3


@pytest.mark.parametrize("rows", [1000, 3 * BLOCK])  # small arrays are summed in numpy, large ones by the backend
@pytest.mark.parametrize("center", [0.0, 1e9])  # 1e9: the plain sums cancel, the deviations must be summed
def test_moments_match_numpy_in_chunks_and_shapes(backend, rows, center):
    """The per-chunk sums and Chan's pairwise update against numpy's mean and variance of all the
    values at once, for several shapes at once, a constant and a tiny spread about a huge mean."""
    from stochgrad.api import _accumulate, _Moments
    from stochgrad.backend import get_backend

    B = get_backend(backend)
    rng = np.random.default_rng(0)
    data = {"scalar": center + rng.standard_normal((2 * rows,)),
            "matrix": center + 1e-3 * rng.standard_normal((2 * rows, 2, 3))}
    moments = {k: _Moments() for k in data} | {"constant": _Moments()}
    for lo in (0, rows):  # two chunks
        items = [(moments[k], B.asarray(v[lo:lo + rows]), 2.0) for k, v in data.items()]
        _accumulate(B, items + [(moments["constant"], B.asarray(np.full((1, 4), 7.0)), 2.0)], rows)
    for k, v in data.items():
        m = moments[k]
        assert m.n == 2 * rows
        np.testing.assert_allclose(m.mean, 2 * v.mean(axis=0), rtol=1e-12)
        # rtol: the chunk means (about 1e9, each off by ~1e-7) enter Chan's update through their difference
        np.testing.assert_allclose(m.stderr(), 2 * v.std(axis=0, ddof=1) / np.sqrt(2 * rows), rtol=1e-5)
    np.testing.assert_array_equal(moments["constant"].mean, np.full(4, 14.0))
    np.testing.assert_array_equal(moments["constant"].stderr(), np.zeros(4))


def test_numpy_streams_are_deterministic_distinct_and_standard():
    """PCG64 streams seeded directly from SplitMix64 outputs: the same seed gives the same numbers,
    neighbouring seeds give uncorrelated standard normals, and threads do not disturb each other."""
    from concurrent.futures import ThreadPoolExecutor

    from scipy.stats import kstest

    from stochgrad.noise import NumpyStream

    def draw(seed: int, n: int = 50_000) -> np.ndarray:
        return NumpyStream(seed).generator().standard_normal(n)

    a, b = draw(1), draw(2)
    np.testing.assert_array_equal(a, draw(1))
    assert kstest(a, "norm").pvalue > 1e-3 and kstest(b, "norm").pvalue > 1e-3
    assert abs(np.corrcoef(a, b)[0, 1]) < 6 / np.sqrt(a.size)  # independent: correlation within 6 standard errors
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(draw, range(16)))
    for seed, x in enumerate(parallel):
        np.testing.assert_array_equal(x, draw(seed))


def test_torch_sample_sums_accumulate_float32_in_float64():
    """float32 per-sample values are summed in float64: torch's float32 sum of these 262,144 values
    near 1e4 is off by about 2e-8 relative, over a thousand times the tolerance below."""
    import torch

    from stochgrad.backend import get_backend

    B = get_backend("torch", dtype="float32")
    x = np.random.default_rng(1).normal(1e4, 1.0, size=(262_144, 2)).astype(np.float32)
    s1, s2 = B.sample_sums(torch.from_numpy(x))
    exact = x.astype(np.float64)
    np.testing.assert_allclose(s1, exact.sum(axis=0), rtol=1e-11)  # float64 sums in another order
    np.testing.assert_allclose(s2, (exact * exact).sum(axis=0), rtol=1e-11)
    assert s1.dtype == np.float64 and s1.shape == (2,)


@pytest.mark.parametrize("name", ["torch", "autograd"])
def test_backend_value_and_grad_per_leaf(name):
    """``Backend.value_and_grad`` against gradients derived by hand: a leaf used twice, a leaf read by
    index, a per-sample leaf, and a leaf the scalar ignores (gradient zeros of its shape)."""
    B = sg.get_backend(name)
    a = B.leaf(np.array(3.0), 4)                # per-sample copies of a scalar, shape (4,)
    v = B.leaf(np.array([1.0, -2.0, 0.5]), 1)   # shape (1, 3)
    unused = B.leaf(np.array([1.0, 2.0]), 4)     # shape (4, 2)
    w = np.arange(4.0)

    def fn(leaves):
        a, v, _ = leaves
        scalar = B.sum(a * a * B.asarray(w), (0,)) + B.sum(v * v, (0, 1)) * v[0, 1]
        return scalar, "aux"

    aux, (ga, gv, gu) = B.value_and_grad(fn, [a, v, unused])
    assert aux == "aux"
    # d/da_i sum_i w_i a_i^2 = 2 w_i a_i;  d/dv (|v|^2 v_1) = 2 v v_1 + |v|^2 e_1
    np.testing.assert_allclose(B.to_numpy(ga), 2 * w * 3.0)
    np.testing.assert_allclose(B.to_numpy(gv), [2 * np.array([1.0, -2.0, 0.5]) * -2.0 + np.array([0.0, 5.25, 0.0])])
    np.testing.assert_array_equal(B.to_numpy(gu), np.zeros((4, 2)))


@pytest.mark.parametrize("name", ["torch", "autograd"])
def test_backend_softmax_matches_scipy(name, monkeypatch):
    """``log_softmax`` and ``softmax`` along any axis against scipy, on torch through both its
    composed and its fused route (chosen by size on the CPU), with extreme logits."""
    from scipy.special import log_softmax, softmax

    B = sg.get_backend(name)
    x = np.array([[[0.0, 1.0, -2.0], [800.0, 0.0, -800.0]], [[-1e3, -1e3 + 1, -1e3 - 1], [5.0, 5.0, 5.0]]])
    for fused in ([False, True] if name == "torch" else [False]):
        if fused:  # every array counts as large: the fused kernels
            monkeypatch.setattr("stochgrad.backends.torch._FUSED_SOFTMAX_ENTRIES", 0)
        for axis in (0, 1, 2):
            np.testing.assert_allclose(B.to_numpy(B.log_softmax(B.asarray(x), axis)), log_softmax(x, axis=axis), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(B.to_numpy(B.softmax(B.asarray(x), axis)), softmax(x, axis=axis), rtol=1e-12, atol=1e-300)
