"""The command line as a user meets it: --version, python -m, -n 1e5, --help, warnings, --json,
short reprs, missing optional packages, rich output and the compare plot (issue 18)."""

import argparse
import io
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stochgrad as sg
from stochgrad import backend_registry as backend_module
from stochgrad.cli import _parser, main
from stochgrad.cli_output import dumps, sample_count, z_text
from stochgrad.testing.strategies import expressions

ROOT = Path(__file__).resolve().parents[1]
NORMAL_SQ = "E[z**2, z ~ Normal(mu, sigma)]"
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


# -- --version and python -m stochgrad ----------------------------------------------------------------


def test_version_has_one_source(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"stochgrad {sg.__version__} (python ")
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", sg.__version__)
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "stochgrad.__version__"}


def test_python_dash_m_stochgrad():
    run = [sys.executable, "-m", "stochgrad"]
    out = subprocess.run(run + ["--version"], capture_output=True, text=True, check=True, env=ENV).stdout
    assert out.startswith(f"stochgrad {sg.__version__}")
    out = subprocess.run(run + ["plan", NORMAL_SQ], capture_output=True, text=True, check=True, env=ENV).stdout
    assert "z ~ Normal(mu, sigma): pathwise" in out
    main_py = (ROOT / "stochgrad" / "__main__.py").read_text()
    assert "from stochgrad.cli import main" in main_py and 'if __name__ == "__main__":' in main_py


# -- -n 1e5 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, n", [("1e5", 100_000), ("100_000", 100_000), ("1e+05", 100_000), ("1E5", 100_000),
                                     ("2.5e3", 2500), ("1.5e2", 150), ("7", 7), (" 12 ", 12), ("1e15", 10**15)])
def test_sample_counts_people_write(text, n):
    assert sample_count(text) == n and type(sample_count(text)) is int


@pytest.mark.parametrize("text", ["1.5", "1.25e1", "-3", "0", "1e-3", "nan", "inf", "abc", "", "1e16", "1e999999"])
def test_sample_counts_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        sample_count(text)


@given(st.integers(1, 10**9), st.integers(0, 6))
def test_scientific_notation_is_read_exactly(m, e):
    """``m e e`` is m * 10**e exactly (read as a decimal, never through a float); so is ``m_000``."""
    assert sample_count(f"{m}e{e}") == m * 10**e == sample_count(f"{m * 10**e:_}")


def test_minus_n_reaches_every_command(capsys):
    assert main(["estimate", NORMAL_SQ, "--at", "mu=1", "--at", "sigma=1", "-n", "2e3", "--seed", "0",
                 "--json", "--no-exact"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 2000
    assert main(["plan", NORMAL_SQ, "-n", "1e0"]) == 0
    assert "no baseline" not in capsys.readouterr().out  # pathwise either way; the plan ran at n = 1
    assert main(["estimate", NORMAL_SQ, "--at", "mu=1", "--at", "sigma=1", "-n", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "argument -n/--samples: expected a whole number" in err and "'1.5'" in err
    assert main(["compare", NORMAL_SQ, "--at", "mu=1", "--at", "sigma=1", "-n", "-5"]) == 2
    assert "argument -n/--samples: must be at least 1" in capsys.readouterr().err


# -- --help ------------------------------------------------------------------------------------------


def _commands():
    ap = _parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    return ap, sub.choices


@pytest.mark.parametrize("command", ["compare", "plan", "estimate"])
def test_every_option_has_help(command):
    _, commands = _commands()
    p = commands[command]
    text = p.format_help()
    for action in p._actions:
        assert action.help and action.help.strip(), (command, action.dest)
        for flag in action.option_strings:
            assert flag in text
    assert "--samples" in text and ("1e5" in text or command == "plan")


def test_top_level_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(c in out for c in ("compare", "plan", "estimate", "--version"))


# -- warnings as one sentence --------------------------------------------------------------------------


def test_warnings_are_one_line_sentences(capsys, monkeypatch):
    import stochgrad.cli as cli

    real = cli.estimate

    def noisy(*args, **kwargs):
        warnings.warn("first line\n   and its second line", sg.BiasWarning, stacklevel=2)
        warnings.warn("from a library", RuntimeWarning, stacklevel=2)
        warnings.warn_explicit("hidden: a library's deprecation", DeprecationWarning, "lib.py", 1, module="lib")
        warnings.warn_explicit("stochgrad's own deprecation", DeprecationWarning, "api.py", 1, module="stochgrad.api")
        return real(*args, **kwargs)

    monkeypatch.setattr(cli, "estimate", noisy)
    assert main(["estimate", NORMAL_SQ, "--at", "mu=1", "--at", "sigma=1", "-n", "100", "--no-exact"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["stochgrad: warning: first line and its second line",
                   "stochgrad: warning: from a library (RuntimeWarning)",
                   "stochgrad: warning: stochgrad's own deprecation (DeprecationWarning)"]
    assert main(["estimate", NORMAL_SQ, "--at", "mu=1", "--at", "sigma=1", "-n", "100", "--json", "--no-exact"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["warnings"] == ["first line and its second line", "from a library (RuntimeWarning)",
                                                    "stochgrad's own deprecation (DeprecationWarning)"]
    assert ".py:" not in captured.err


def test_real_warnings_in_the_cli_and_python_warnings_in_the_library(capsys, backend):
    assert main(["estimate", NORMAL_SQ, "--at", "mu=1", "--at", "sigma=1", "-n", "1", "--backend", backend,
                 "--no-exact"]) == 0
    err = capsys.readouterr().err
    assert err == "stochgrad: warning: standard error undefined at n = 1 (it needs at least two samples)\n"
    with pytest.warns(sg.NonFiniteWarning, match="undefined at n = 1"):  # library callers: a Python warning
        sg.estimate(NORMAL_SQ, {"mu": 1.0, "sigma": 1.0}, n=1, backend=backend, seed=0)


# -- z = exact, never nan -------------------------------------------------------------------------------


def test_exact_results_say_exact_not_nan(capsys, backend):
    pytest.importorskip("sympy")
    assert main(["estimate", "E[y, y ~ Bernoulli(p)]", "--at", "p=0.3", "-n", "100", "--seed", "0",
                 "--backend", backend]) == 0
    out = capsys.readouterr().out
    assert "value = 0.3 (z = exact)" in out and "d/dp = 1 (z = exact)" in out and "nan" not in out


def test_z_text():
    assert z_text(1.5, 1.0, 0.25) == "2"
    assert z_text(1.0, 1.0 + 1e-14, 0.0) == "exact"
    assert z_text(0.0, 24.0, 0.0) == "s.e. 0, off by -24"  # deterministic and biased (detached)
    assert z_text(1.0, 1.0, float("nan")) == "undefined"  # n = 1
    assert z_text([1.0, 2.0], [1.0, 2.0], [0.0, 0.0]) == "exact"
    assert z_text([1.0, 3.0], [1.0, 2.0], [0.0, 0.5]) == "[exact 2]"


# -- --json: always JSON ------------------------------------------------------------------------------


def _at(path, doc):
    """The value at a path of ``dumps``' ``nulls`` (``rows[2].bias.mu``, ``grad.w[1]``)."""
    for key, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        doc = doc[int(index)] if index else doc[key]
    return doc


def test_dumps_lists_what_each_null_was():
    text = dumps({"a": float("nan"), "b": [1.0, float("inf"), np.float32(2)], "c": {"d": np.array([-np.inf, 0.5])},
                  "f": np.int64(3)})
    doc = json.loads(text)
    assert doc["nulls"] == {"a": "nan", "b[1]": "inf", "c.d[0]": "-inf"}
    assert all(_at(p, doc) is None for p in doc["nulls"]) and doc["b"][2] == 2.0 and doc["f"] == 3


EXPRESSIONS = [NORMAL_SQ, "E[y**2, y ~ Bernoulli(p)]", "E[log(z), z ~ Normal(mu, 1)]", "E[z ~ Normal(0, 1)]",
               "E[z**2, z ~ Normal(mu, sigma)", "E[1 / z, z ~ Normal(mu, 1)]", "E[q, q ~ Poisson(lam)]"]
VALUES = ["mu=1", "sigma=2", "sigma=0", "p=0.25", "p=1.5", "lam=3", "mu=[1, 2]", "mu=nan", "nu=1", "sigma=x"]


@settings(max_examples=30)
@given(command=st.sampled_from(["estimate", "plan", "compare"]), expr=st.sampled_from(EXPRESSIONS),
       at=st.lists(st.sampled_from(VALUES), max_size=3, unique=True),
       n=st.sampled_from(["1", "2", "50", "1e2", "1.5", "-1"]), backend=st.sampled_from(["autograd", "torch"]),
       extra=st.sampled_from([[], ["--seed", "0"], ["--estimator", "z=score"], ["--bogus"], ["--seed", "-1"]]))
def test_json_is_always_valid(command, expr, at, n, backend, extra):
    """Whatever the expression and options, ``--json`` prints one JSON document on stdout: the result,
    or ``{"error": ...}`` with exit status 2; every null is a NaN or infinity listed under ``nulls``
    (or an estimate's ``nonfinite``), or a field that is absent by nature (no closed form, no bias)."""
    if command == "compare" and "--estimator" in extra:
        extra = []
    argv = [command, expr, *(a for v in at for a in ("--at", v)), "-n", n, "--backend", backend, "--json", *extra]
    if command == "estimate":
        argv.append("--no-exact")  # the SymPy oracle: tested elsewhere, and slow here
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stdout", out)
        mp.setattr(sys, "stderr", err)
        code = main(argv)
    doc = json.loads(out.getvalue())
    assert isinstance(doc, dict)
    if code:
        assert code == 2 and set(doc) == {"error", "warnings"} and doc["error"]["message"], (argv, doc)
        assert "error: " in err.getvalue() and "Traceback" not in err.getvalue()
    else:
        assert "error" not in doc
        for path in doc.get("nulls", {}):
            assert _at(path, doc) is None


def test_compare_json_names_its_nulls(capsys):
    """At n = 1 the standard errors are NaN: null in the JSON, each listed under ``nulls``."""
    assert main(["compare", NORMAL_SQ, "--at", "mu=1", "--at", "sigma=1", "-n", "1", "--seed", "0", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["nulls"]["rows[0].stderr.mu"] == "nan" and _at("rows[0].stderr.mu", doc) is None
    assert doc["expression"] == NORMAL_SQ


# -- short reprs --------------------------------------------------------------------------------------


def test_short_repr_of_an_estimate_and_a_plan(backend):
    r = sg.estimate(NORMAL_SQ, {"mu": 12.0, "sigma": 42.0}, n=100_000, seed=0, backend=backend)
    text = repr(r)
    assert len(text) < 150 and "\n" not in text, text
    se = float(r.stderr["mu"])
    assert text.startswith(f"<Estimate value={float(r.value):.4g} ± {float(r.value_stderr):.2g}, grad mu=")
    assert f"mu={float(r.grad['mu']):.4g} ± {se:.2g}" in text and text.endswith(f", n=100000, {backend}>")
    assert repr(r.plan) == f"<Plan E[z ** 2, z ~ Normal(mu, sigma)]: z=pathwise; policy unbiased, backend {backend}>"
    exact = repr(sg.estimate("E[y, y ~ Bernoulli(p)]", {"p": 0.3}, n=10, seed=0, backend=backend))
    assert exact == f"<Estimate value=0.3 (exact), grad p=1 (exact), n=10, {backend}>"
    assert str(r).startswith("value = ") and str(r.plan).startswith("z ~ Normal(mu, sigma): pathwise")  # str as before


def test_estimate_repr_of_arrays_and_many_parameters():
    r = sg.estimate("E[a * z + b + c + d + f, z ~ Normal(mu, 1)]",
                    {"mu": np.arange(5.0), "a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0, "f": 1.0}, n=100, seed=0)
    text = repr(r)
    assert "value=<array (5,)>" in text and "(2 more)" in text and len(text) < 200


@settings(max_examples=60)
@given(expressions())
def test_expression_repr_is_short_and_leaves_str_equality_and_hash(e):
    text = str(e)
    assert sg.parse(text) == e and hash(sg.parse(text)) == hash(e)
    r = repr(e)
    assert r == f"Expr({text!r})" if len(text) <= 100 else (r.startswith("Expr(") and len(r) < 120)
    for b in getattr(e, "bindings", ()):
        assert repr(b) == f"Binding({str(b)!r})" or len(repr(b)) < 120


def test_expression_repr_of_a_long_sum():
    e = sg.parse(" + ".join(f"x{i}" for i in range(5000)))
    assert len(repr(e)) < 120 and repr(e).startswith("Expr('x0 + x1 + ") and repr(e).endswith("\u2026')")


# -- missing optional dependencies ---------------------------------------------------------------------


def _without(monkeypatch, *modules, backend):
    """Simulate absent packages: None in sys.modules makes ``import`` fail; the backend module and
    the cached backend instances are dropped so that the next get_backend imports afresh."""
    for m in modules:
        monkeypatch.setitem(sys.modules, m, None)
    monkeypatch.delitem(sys.modules, f"stochgrad.backends.{backend}", raising=False)
    monkeypatch.setattr(backend_module, "_INSTANCES", {})


@pytest.mark.parametrize("backend, modules, missing", [
    ("autograd", ["autograd"], "autograd"), ("autograd", ["scipy"], "scipy"), ("torch", ["torch"], "torch"),
    ("jax", ["jax"], "jax"),
])
def test_a_missing_package_is_named_with_its_extra(capsys, monkeypatch, backend, modules, missing):
    _without(monkeypatch, *modules, backend=backend)
    assert main(["estimate", NORMAL_SQ, "--at", "mu=1", "--at", "sigma=1", "-n", "10", "--backend", backend]) == 2
    err = capsys.readouterr().err
    assert f"backend {backend!r} needs {missing}, which is not installed" in err
    assert f"'stochgrad[{backend}]'" in err and "Traceback" not in err
    assert main(["plan", NORMAL_SQ]) == 0  # planning needs no framework


def test_exact_asked_without_sympy_says_so(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sympy", None)
    args = ["estimate", NORMAL_SQ, "--at", "mu=1", "--at", "sigma=1", "-n", "100", "--seed", "0"]
    assert main(args + ["--exact"]) == 0
    captured = capsys.readouterr()
    assert "stochgrad: warning: --exact: no closed form, SymPy is not installed: pip install sympy" in captured.err
    assert "'stochgrad[oracle]'" in captured.err and "exact (SymPy)" not in captured.out
    assert main(args) == 0  # not asked for (the default): no note
    assert capsys.readouterr().err == ""


# -- rich: progress bar and table ----------------------------------------------------------------------


def test_progress_bar_on_stderr(capsys):
    from stochgrad.noise import BLOCK

    total = 2 * BLOCK + 10
    assert main(["estimate", NORMAL_SQ, "--at", "mu=1", "--at", "sigma=1", "-n", str(total), "--chunk-size", str(BLOCK),
                 "--progress", "--seed", "0", "--no-exact"]) == 0
    err = capsys.readouterr().err
    assert "100%" in err and f"{total}/{total} samples" in err and "sampling" in err


def test_progress_without_rich_degrades_to_a_note(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "rich", None)
    assert main(["estimate", NORMAL_SQ, "--at", "mu=1", "--at", "sigma=1", "-n", "100", "--progress",
                 "--no-exact", "--seed", "0"]) == 0
    captured = capsys.readouterr()
    assert "--progress draws with rich, which is not installed" in captured.err and "d/dmu = " in captured.out


def test_compare_table_drawn_by_rich():
    from rich.console import Console

    from stochgrad.cli_rich import compare_table

    c = sg.compare("E[y**2, y ~ Bernoulli(p)]", {"p": 0.25}, n=500, seed=0, temperatures=(0.5,))
    buffer = io.StringIO()
    Console(file=buffer, width=220, force_terminal=False).print(compare_table(c))
    out = buffer.getvalue()
    for r in c.rows:
        assert r.estimator.split(" (")[0] in out
    assert "exact (enumeration): d/dp = 1" in out and "d/dp" in out and "(exact)" in out


# -- the compare plot ----------------------------------------------------------------------------------


def test_compare_plot_labels_every_panel_and_its_legend_covers_no_data():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stochgrad.compare import figure

    c = sg.compare(NORMAL_SQ, {"mu": 1.0, "sigma": 2.0}, n=500, seed=0, repeats=5, repeat_sizes=(10, 100))
    fig = figure(c)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a layout that could not be applied would warn
            fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        assert len(fig.axes) == 4 and len(fig.legends) == 1
        legend = fig.legends[0].get_window_extent(renderer)
        assert fig.bbox.contains(legend.x0, legend.y0) and fig.bbox.contains(legend.x1, legend.y1)  # not cut off
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
            assert ax.get_legend() is None
            assert not legend.overlaps(ax.get_tightbbox(renderer))  # the axes, ticks and labels included
            for artist in ax.lines + ax.collections:  # each drawn datum
                box = artist.get_window_extent(renderer)
                if box.width > 0 or box.height > 0:
                    assert not legend.overlaps(box)
        labels = [t.get_text() for t in fig.legends[0].get_texts()]
        assert all(f"z: {r.estimator}" in " ".join(labels) for r in c.rows)
    finally:
        plt.close(fig)


def test_compare_table_on_a_terminal_and_piped(capsys):
    from stochgrad.cli_rich import print_compare

    c = sg.compare("E[y**2, y ~ Bernoulli(p)]", {"p": 0.25}, n=200, seed=0, temperatures=(0.5,))
    lines = []
    print_compare(c, lines.append, terminal=False)
    assert lines == [c.table()] and capsys.readouterr().out == ""  # piped: the plain columns
    print_compare(c, lines.append, terminal=True)
    out = capsys.readouterr().out
    assert len(lines) == 1 and "estimator" in out and ("\u2501" in out or "\u2500" in out)  # drawn by rich


def test_version_is_one_line_whatever_the_terminal_width(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "30")
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.count("\n") == 1


def test_comparison_repr_is_one_line():
    c = sg.compare("E[y**2, y ~ Bernoulli(p)]", {"p": 0.25}, n=100, seed=0, temperatures=(0.5,))
    assert repr(c) == (f"<Comparison E[y ** 2, y ~ Bernoulli(p)]: {len(c.rows)} estimator runs, n=100, autograd,"
                       " exact from enumeration>")


def test_a_bug_under_json_is_still_json(capsys, monkeypatch):
    import stochgrad.cli as cli

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "estimate", broken)
    assert main(["estimate", NORMAL_SQ, "--at", "mu=1", "--at", "sigma=1", "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["error"] == {"type": "RuntimeError", "message": "a bug"}
    assert "Traceback" in captured.err  # the bug is not hidden
    with pytest.raises(RuntimeError, match="a bug"):  # without --json: Python's own report
        main(["estimate", NORMAL_SQ, "--at", "mu=1", "--at", "sigma=1"])
