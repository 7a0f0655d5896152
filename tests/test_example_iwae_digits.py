"""examples/iwae_digits.py: the DSL log weight and bounds against numpy, the K-ordering, and training helps."""

import importlib.util
import math
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from scipy import special, stats

import stochgrad as sg

pytest.importorskip("torch")
pytest.importorskip("sklearn")

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "examples" / "iwae_digits.py"
NUMBER = r"(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|-?inf)"


def _module():
    spec = importlib.util.spec_from_file_location("iwae_digits", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


iw = _module()


def _weights(latent=5, hidden=16, seed=3):
    return iw.numpy_weights(iw.init_weights(latent, hidden, seed))


def _np_log_weight(w, x, z):
    """log p(x | z) + log p(z) - log q(z | x) by hand; x (..., 64), z (..., d), broadcasting leading axes."""
    h = np.tanh(x @ w["W1"] + w["b1"])
    mu, sigma = h @ w["Wm"] + w["bm"], np.exp(h @ w["Ws"] + w["bs"])
    logits = np.tanh(z @ w["W3"] + w["b3"]) @ w["W4"] + w["b4"]
    loglik = np.sum(x * logits - np.logaddexp(0.0, logits), axis=-1)  # Bernoulli(logits) = x l - softplus(l)
    prior = np.sum(stats.norm.logpdf(z), axis=-1)
    q = np.sum(-0.5 * ((z - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * math.log(2 * math.pi), axis=-1)
    return loglik + prior - q, mu, sigma


def test_log_weight_of_one_image_matches_numpy(backend):
    w = _weights()
    _, test = iw.load()
    x = test[7]
    z = np.random.default_rng(0).normal(size=5) * 1.3
    want, _, _ = _np_log_weight(w, x, z)
    r = sg.estimate(iw.LOG_WEIGHT, {"x": x, "z": z, **w}, n=2, backend=backend, seed=0, wrt=["W4", "b4"])
    assert float(r.value) == pytest.approx(float(want), rel=1e-10, abs=1e-9)
    assert float(r.value_stderr) == 0.0  # deterministic: no E[], no noise
    # d/dl [x l - softplus(l)] = x - sigmoid(l): the decoder's last layer by hand
    h3 = np.tanh(z @ w["W3"] + w["b3"])
    resid = x - special.expit(h3 @ w["W4"] + w["b4"])
    np.testing.assert_allclose(r.grad["W4"], np.outer(h3, resid), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r.grad["b4"], resid, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("k", [1, 5])
def test_bound_matches_a_numpy_monte_carlo(backend, k):
    """L_K on 40 test images: stochgrad's estimate against numpy's own draws, within 5 standard errors."""
    w = _weights()
    x = iw.load()[1][:40]
    r = sg.estimate(iw.bound(k), {"x": x, **w}, n=200, backend=backend, seed=1, wrt=[])
    rng = np.random.default_rng(11)
    _, mu, sigma = _np_log_weight(w, x, np.zeros((40, 5)))
    z = mu + sigma * rng.normal(size=(4000, k, 40, 5))
    logw, _, _ = _np_log_weight(w, x, z)
    per_draw = np.sum(special.logsumexp(logw, axis=1) - math.log(k), axis=-1)  # (4000,)
    want, want_se = per_draw.mean(), per_draw.std(ddof=1) / math.sqrt(per_draw.size)
    assert float(r.value) == pytest.approx(want, abs=5 * math.hypot(want_se, float(r.value_stderr)))


def test_script_trains_and_the_bounds_tighten_with_k(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--epochs", "1", "--k", "5", "--eval-n", "10"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "z ~ iid(5, Normal(" in out and "pathwise" in out, out
    test_nb = [float(v) for v in re.findall(r"test -L_5\s+" + NUMBER, out)]
    assert len(test_nb) == 2 and all(math.isfinite(v) and v > 0 for v in test_nb), out
    assert test_nb[1] < test_nb[0] - 5, out  # one epoch (15 Adam steps), seeded: about 46.7 -> 32.8 nats
    bounds = {int(k): (float(v), float(se)) for k, v, se in
              re.findall(r"L_(\d+)\s+" + NUMBER + r" \+- " + NUMBER, out)}
    assert sorted(bounds) == [1, 5, 50], out
    (l1, s1), (l5, s5), (l50, s50) = bounds[1], bounds[5], bounds[50]
    assert l1 < l5 + 5 * math.hypot(s1, s5) and l5 < l50 + 5 * math.hypot(s5, s50), out
    assert l1 < l50, out  # and strictly tighter at K = 50 (seeded: about -33.7 vs -32.5)
    assert all(v < 0 for v, _ in bounds.values()), out  # a log-likelihood bound of binary images
