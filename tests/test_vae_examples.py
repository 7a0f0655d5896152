"""The discrete VAE example (stochgrad ELBO vs the hand-written reference) runs and prints finite numbers."""

import math
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("torch")

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "discrete_vae_digits.py"
ESTIMATORS = ["score", "relaxed", "straight_through"]


def test_discrete_vae_example_smoke():
    out = subprocess.run([sys.executable, str(EXAMPLE), "--steps", "30"],
                         capture_output=True, text=True, check=True, timeout=600).stdout
    assert "score (leave-one-out baseline)" in out and "relaxed (Gumbel-softmax, temperature 0.5)" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()
            if line.split() and line.split()[0] in ESTIMATORS and not line.startswith("plan")}
    assert sorted(rows) == sorted(ESTIMATORS), out
    for name, cells in rows.items():
        # ref -ELBO, sg -ELBO, diff, sg eval, ref ms/step, sg ms/step, ratio (with its trailing x)
        numbers = [float(c.rstrip("x")) for c in cells]
        assert len(numbers) == 7 and all(math.isfinite(v) for v in numbers), (name, cells)
        ref_nelbo, sg_nelbo, _, own, ref_ms, sg_ms, _ = numbers
        assert 0 < ref_nelbo < 64 * math.log(2) + 20 and 0 < sg_nelbo < 64 * math.log(2) + 20  # nats per 8x8 image
        assert abs(own - sg_nelbo) < 1.0  # stochgrad's own estimate of the test -ELBO agrees with the reference's
        assert ref_ms > 0 and sg_ms > 0
    assert "NON-FINITE" not in out
