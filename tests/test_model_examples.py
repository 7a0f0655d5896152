"""The model examples (VAE on digits, Bayesian logistic regression) run end to end with tiny settings."""

import math
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
NUMBER = r"(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|-?inf)"


def _run(script: str, *args: str, cwd: pathlib.Path) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_vae_digits(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    out_png = tmp_path / "vae.png"
    out = _run("vae_digits.py", "--epochs", "1", "--out", str(out_png), cwd=tmp_path)
    assert "z ~ Normal(mu, sigma): pathwise" in out and "KL(Normal(mu, sigma) || Normal(0, 1)): closed form" in out
    test_nelbo = [float(v) for v in re.findall(r"test -ELBO\s+" + NUMBER, out)]
    train_nelbo = [float(v) for v in re.findall(r"train -ELBO\s+" + NUMBER, out)]
    assert len(test_nelbo) == 2 and len(train_nelbo) == 1, out  # before training and after epoch 1
    assert all(math.isfinite(v) and v > 0 for v in test_nelbo + train_nelbo), out
    assert test_nelbo[1] < test_nelbo[0], out  # one epoch already helps (seeded: about 45 -> 32 nats)
    assert out_png.is_file() and out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "vae_digits.png").exists()  # --out was honoured


def test_bayesian_logreg_autograd(tmp_path):
    pytest.importorskip("autograd")
    pytest.importorskip("sklearn")
    out = _run("bayesian_logreg_autograd.py", "--iters", "20", cwd=tmp_path)
    assert "w ~ Normal(m, s): pathwise" in out and "KL(Normal(m, s) || Normal(0, 1)): closed form" in out
    elbos = [float(v) for v in re.findall(r"ELBO\s+" + NUMBER, out)]
    assert len(elbos) >= 2 and all(math.isfinite(v) and v < 0 for v in elbos), out
    assert elbos[-1] > elbos[0], out  # 20 Adam steps already raise the ELBO
    accuracy = re.search(r"test accuracy \(posterior mean\): " + NUMBER, out)
    assert accuracy is not None, out
    assert 0.0 <= float(accuracy.group(1)) <= 1.0
