"""The example scripts run and print what their docstrings promise (small n)."""

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    "script, expected",
    [
        ("normal_reparameterization.py", ["naive sampling (torch.normal)", "0.00", "stochgrad, planned (pathwise)"]),
        ("exponential_weibull.py", ["E[z], z ~ Exponential(2)", "E[z**2], z ~ Weibull(1.5, 2.5)", "pathwise"]),
        ("inverse_cdf.py", ["z ~ Kumaraswamy(a, b): pathwise", "z ~ Rayleigh(s): pathwise"]),
        ("discrete_gradients.py", ["default plan                                     1.0000 \u00b1 0.0000  unbiased",
                                   "straight-through (expect 2p = 0.5)"]),
    ],
)
def test_example_runs(script, expected, backend):
    out = subprocess.run([sys.executable, str(EXAMPLES / script), "-n", "2000", "--backend", backend],
                         capture_output=True, text=True, check=True).stdout
    for text in expected:
        assert text in out


def test_relax_toy_example(backend):
    out = subprocess.run([sys.executable, str(EXAMPLES / "relax_toy.py"), "--steps", "600", "--seeds", "1",
                          "--backend", backend], capture_output=True, text=True, check=True).stdout
    default, plain = out.split("plain score function")
    assert "enumerate" in default and "p < 0.05 in 1/1" in default  # 600 exact Adam steps: p ~ 0.003
    assert "score (no baseline)" in plain


def test_variance_aware_planning_example():
    out = subprocess.run([sys.executable, str(EXAMPLES / "variance_aware_planning.py"), "-n", "4000"],
                         capture_output=True, text=True, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("cos(k * z)")]
    assert len(rows) == 4 and "score (leave-one-out baseline)" in rows[-1]  # k = 20
