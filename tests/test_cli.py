"""The command line, run in-process through ``stochgrad.cli.main``."""

import json
import subprocess
import sys

import numpy as np
import pytest

from stochgrad.cli import main

NORMAL_SQ = "E[z**2, z ~ Normal(mu, sigma)]"


def test_estimate_prints_estimates_and_plan(capsys, backend):
    assert main(["estimate", NORMAL_SQ, "--at", "mu=12", "--at", "sigma=42", "-n", "20000",
                 "--backend", backend, "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert f"(n=20000, backend={backend}, seed=0)" in out
    assert "d/dmu = " in out and "d/dsigma = " in out
    assert "z ~ Normal(mu, sigma): pathwise" in out


def test_estimate_wrt_limits_the_gradients(capsys):
    assert main(["estimate", NORMAL_SQ, "--at", "mu=12", "--at", "sigma=42", "-n", "20000", "--seed", "0",
                 "--wrt", "sigma"]) == 0
    out = capsys.readouterr().out
    assert "d/dsigma = " in out and "d/dmu" not in out  # nor in the closed-form line
    assert main(["estimate", NORMAL_SQ, "--at", "mu=12", "--at", "sigma=42", "--wrt", "nu"]) == 2
    assert "wrt names 'nu'" in capsys.readouterr().err


def test_estimate_json_with_array_parameter_and_override(capsys):
    assert main(["estimate", NORMAL_SQ, "--at", "mu=[1, 2]", "--at", "sigma=1", "-n", "5000",
                 "--seed", "3", "--estimator", "z=score", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["seed"] == 3 and len(data["value"]) == 2 and len(data["grad"]["mu"]) == 2
    assert data["plan"] == [{"var": "z", "estimator": "score", "reason": "requested", "biased": False}]
    for g, se, exact in zip(data["grad"]["mu"], data["stderr"]["mu"], [2.0, 4.0]):
        assert abs(g - exact) < 6 * se


def test_plan_command(capsys):
    assert main(["plan", "E[z > 0, z ~ Normal(mu, 1)]"]) == 0
    assert capsys.readouterr().out.strip() == (
        "z ~ Normal(mu, 1): score (leave-one-out baseline) \u2014 cost not differentiable in z: comparison `z > 0` [unbiased]"
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["estimate", "E[z ~ Normal(0, 1)]"], "unexpected '~'"),
        (["estimate", NORMAL_SQ, "--at", "mu=1"], "parameter 'sigma' is missing"),
        (["estimate", NORMAL_SQ, "--at", "mu=1", "--at", "sigma=abc"], "--at sigma=abc: the value must be a number or a JSON array"),
        (["estimate", NORMAL_SQ, "--at", "mu=1", "--at", "sigma=0"], "parameter 'scale' (given as `sigma`) must be > 0"),
        (["plan", NORMAL_SQ, "--estimator", "z=magic"], "unknown estimator 'magic' for 'z'"),
    ],
)
def test_errors_are_reported_with_exit_code_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("stochgrad: error: ") and message in err


def test_device_and_dtype_reach_the_backend(capsys):
    torch = pytest.importorskip("torch")
    assert main(["estimate", NORMAL_SQ, "--at", "mu=1", "--at", "sigma=1", "-n", "20000", "--seed", "0",
                 "--backend", "torch", "--dtype", "float32", "--device", "cpu", "--json", "--no-exact"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert abs(data["grad"]["mu"] - 2.0) < 6 * data["stderr"]["mu"]  # d/dmu E[z^2] = 2 mu
    # float32 noise comes from torch's generator, float64 noise from numpy: the numbers differ
    assert main(["estimate", NORMAL_SQ, "--at", "mu=1", "--at", "sigma=1", "-n", "20000", "--seed", "0",
                 "--backend", "torch", "--json", "--no-exact"]) == 0
    assert json.loads(capsys.readouterr().out)["value"] != data["value"]
    if not torch.cuda.is_available():
        assert main(["estimate", NORMAL_SQ, "--at", "mu=1", "--at", "sigma=1", "--backend", "torch", "--device", "cuda"]) == 2
        assert "device 'cuda': this torch" in capsys.readouterr().err
    assert main(["compare", NORMAL_SQ, "--at", "mu=1", "--at", "sigma=1", "-n", "1000", "--device", "cpu"]) == 2
    assert ("compare() got an unexpected keyword argument 'device'; backend options for autograd are: dtype"
            in capsys.readouterr().err)


def test_installed_console_script():
    out = subprocess.run(["stochgrad", "plan", NORMAL_SQ], capture_output=True, text=True, check=True).stdout
    assert "pathwise" in out
    out = subprocess.run([sys.executable, "-m", "stochgrad.cli", "--help"], capture_output=True, text=True, check=True).stdout
    assert "estimate" in out and "plan" in out


def test_estimate_prints_the_closed_form_and_z_scores(capsys):
    assert main(["estimate", NORMAL_SQ, "--at", "mu=1", "--at", "sigma=2", "-n", "20000", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "exact (SymPy): mu**2 + sigma**2" in out
    assert "value = 5 (z = " in out and "d/dmu = 2 (z = " in out and "d/dsigma = 4 (z = " in out
    assert main(["estimate", NORMAL_SQ, "--at", "mu=1", "--at", "sigma=2", "-n", "100", "--no-exact"]) == 0
    assert "exact" not in capsys.readouterr().out
    assert main(["estimate", "E[floor(z), z ~ Normal(mu, 1)]", "--at", "mu=1", "-n", "100", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["exact"] is None


def test_compare_runs_every_estimator(capsys, tmp_path):
    png = tmp_path / "cmp.png"
    assert main(["compare", "E[y**2, y ~ Bernoulli(p)]", "--at", "p=0.25", "-n", "4000", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    for name in ("detached", "score (leave-one-out baseline)", "enumerate", "relaxed (Gumbel-softmax, temperature 0.1)",
                 "straight_through", "straight_through_gumbel"):
        assert name in out
    assert "exact (enumeration): d/dp = 1" in out and png.stat().st_size > 10_000
    assert main(["compare", NORMAL_SQ, "--at", "mu=12", "--at", "sigma=42", "-n", "2000", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {r["estimator"]: r for r in data["rows"]}
    assert data["exact"] == {"mu": 24.0, "sigma": 84.0} and data["exact_source"].startswith("SymPy")
    assert rows["detached"]["grad"] == {"mu": 0.0, "sigma": 0.0} and not rows["detached"]["unbiased"]
    for est in ("pathwise", "score (leave-one-out baseline)", "score (no baseline)"):
        r = rows[est]
        assert r["unbiased"] and abs(r["bias"]["mu"]) < 6 * r["stderr"]["mu"]


def test_compare_repeats_measure_the_error_against_n():
    """The repeated runs' mean squared error at n matches the per-sample variance over n, from the
    closed form: for E[y**2, y ~ Bernoulli(p)] the no-baseline score gradient per sample is 1/p
    with probability p, else 0, so its variance is 1/p - 1 = 3 at p = 0.25.  With 400 runs the
    ratio below has a standard error of about 0.07; the tolerance is 6 of them."""
    from stochgrad import ValidationError
    from stochgrad.compare import compare

    c = compare("E[y**2, y ~ Bernoulli(p)]", {"p": 0.25}, n=2000, repeats=400, repeat_sizes=(100,), seed=3,
                temperatures=(0.5,))
    rows = {r.estimator: r for r in c.rows}
    score = rows["score (no baseline)"]
    assert score.runs[100]["p"].shape == (400,)
    assert len(np.unique(score.runs[100]["p"])) > 20  # independent runs, not one seed repeated
    ratio = float(score.measured_error(100, c.exact)["p"]) ** 2 * 100 / 3.0
    assert abs(ratio - 1) < 0.42, ratio
    assert float(rows["enumerate"].measured_error(100, c.exact)["p"]) == 0.0  # exact in every run
    assert float(rows["detached"].measured_error(100, c.exact)["p"]) == 1.0  # always 0 against 1
    data = c.to_json()["rows"][0]
    assert set(data["runs"]) == {"100"} and len(data["runs"]["100"]["p"]) == 400
    with pytest.raises(ValidationError, match="repeats"):
        compare("E[y**2, y ~ Bernoulli(p)]", {"p": 0.25}, repeats=1)


def test_plot_legend_names_exact_estimators(tmp_path, monkeypatch):
    """An exact estimator has no line on the log-scale error plot; its legend entry says why."""
    plt = pytest.importorskip("matplotlib.pyplot")
    from stochgrad.compare import compare, plot

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    c = compare("E[y**2, y ~ Bernoulli(p)]", {"p": 0.25}, n=1000, seed=0)
    plot(c, str(tmp_path / "c.png"))
    labels = [t.get_text() for t in figures[0].legends[0].get_texts()]  # one legend, below the panels
    assert "y: enumerate (exact: error 0, not drawn)" in labels
    # the exact rows: enumerate, and sum_and_sample (its k >= the 2 states: an exact sum)
    exact = [f"y: {r.estimator} (exact: error 0, not drawn)" for r in c.rows
             if r.unbiased and float(r.variance["p"]) == 0.0]
    assert "y: enumerate (exact: error 0, not drawn)" in exact and len(exact) >= 3  # also mvd, sum_and_sample
    assert [label for label in labels if "not drawn" in label] == exact


def test_output_into_a_closed_pipe_ends_quietly():
    """``stochgrad ... | head``: when the reader has gone, exit 1 without a traceback."""
    done = subprocess.run(f"stochgrad plan '{NORMAL_SQ}' | head -c 0; exit ${{PIPESTATUS[0]}}", shell=True,
                          executable="/bin/bash", capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr
