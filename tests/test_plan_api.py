"""The plan is the centre of the API: ``sg.plan(expr, shapes_or_params, ...)`` returns a :class:`Plan`
that prints, compares and runs, and ``sg.estimate`` / ``sg.compile`` are plan-then-run.

Checked here: plan-then-run gives ``sg.estimate``'s numbers bit for bit and ``Plan.objective``
``sg.compile``'s (both backends); the plan shown is the plan run; ``min_variance`` pilots run when
the plan is made, never when it runs; shapes and values forms; a plan refuses parameters of other
shapes; backend options are an explicit mapping (or a backend object), the bare form deprecated;
unknown keywords are TypeErrors at every entry point (a Hypothesis property over misspellings);
and the layering (the planner does not import the API)."""

import ast
import importlib
import inspect
import pathlib
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import stochgrad as sg
from conftest import grad_of
from stochgrad import api, compiled, variance
from stochgrad.noise import BLOCK

NORMAL_SQ = "E[z**2, z ~ Normal(mu, sigma)]"
CATEGORICAL = "E[sum(y), y ~ Categorical(probs=q)]"
CASES = [  # (text, params, estimators): pathwise, score with a baseline, enumeration, arrays, two nodes
    (NORMAL_SQ, {"mu": 1.5, "sigma": 0.7}, None),
    ("E[(z > 0) + 3, z ~ Normal(mu, 1)]", {"mu": 0.2}, None),
    ("E[y * w, y ~ Bernoulli(p)]", {"p": 0.3, "w": 2.0}, {"y": "score"}),
    ("E[sum(z**2), z ~ Normal(mu, 1)]", {"mu": np.array([0.1, -0.4, 2.0])}, None),
    ("E[y * z, y ~ Bernoulli(p), z ~ Normal(mu, 1)]", {"p": 0.6, "mu": -0.3}, None),
    (CATEGORICAL, {"q": np.array([0.2, 0.3, 0.5])}, None),
]


def _same(a, b):
    """Two estimates with bit-identical numbers (NaN equal to NaN: the n = 1 standard errors)."""
    assert a.grad.keys() == b.grad.keys()
    for x, y in [(a.value, b.value), (a.value_stderr, b.value_stderr)] + [(a.grad[k], b.grad[k]) for k in a.grad] + [
            (a.stderr[k], b.stderr[k]) for k in a.stderr]:
        np.testing.assert_array_equal(x, y)
    assert (a.seed, a.n, a.backend, a.chunk_size, str(a.plan)) == (b.seed, b.n, b.backend, b.chunk_size, str(b.plan))


# -- plan, then run ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, params, estimators", CASES)
@pytest.mark.parametrize("n", [1, 3000])
def test_plan_then_estimate_equals_estimate_bit_for_bit(backend, text, params, estimators, n):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sg.NonFiniteWarning)  # n = 1: standard errors undefined, as in both
        direct = sg.estimate(text, params, n=n, backend=backend, seed=7, estimators=estimators, chunk_size=1024)
        p = sg.plan(text, params, backend=backend, estimators=estimators)
        ran = p.estimate(params, n=n, seed=7, chunk_size=1024)
    _same(direct, ran)
    shapes = sg.plan(text, {k: np.shape(v) for k, v in params.items()}, backend=backend, estimators=estimators)
    assert shapes is p  # values matter to a plan only through their shapes (without min_variance)


def test_plan_estimate_keywords_wrt_progress_and_fresh_seed(backend):
    params = {"mu": 1.5, "sigma": 0.7}
    p = sg.plan(NORMAL_SQ, params, backend=backend)
    seen = []
    n = 2 * BLOCK + 10  # chunks are whole noise blocks: three here
    r = p.estimate(params, n=n, seed=3, wrt=["mu"], chunk_size=BLOCK, progress=lambda done, n: seen.append(done))
    assert list(r.grad) == ["mu"] and seen == [BLOCK, 2 * BLOCK, n]
    _same(r, sg.estimate(NORMAL_SQ, params, n=n, backend=backend, seed=3, wrt=["mu"], chunk_size=BLOCK))
    fresh = p.estimate(params, n=16)  # seed=None: a fresh seed, reported, which reproduces the run
    _same(fresh, p.estimate(params, n=16, seed=fresh.seed))


def _value_and_grad(backend, f, mu):
    if backend == "torch":
        import torch

        x = torch.tensor(mu, dtype=torch.float64, requires_grad=True)
        out = f(mu=x)
        out.backward()
        return float(out.detach()), float(x.grad)

    value = float(f(mu=mu))
    return value, float(grad_of(backend)(lambda m: f(mu=m))(mu))


@pytest.mark.parametrize("text", ["E[z**2, z ~ Normal(mu, 1)]", "E[(z > 0) * mu, z ~ Normal(mu, 1)]",
                                  "E[y * mu, y ~ Bernoulli(sigmoid(mu))]"])
@pytest.mark.parametrize("n", [1, 64])
def test_plan_objective_equals_compile(backend, text, n):
    f = sg.compile(text, n=n, backend=backend, seed=11)
    g = sg.plan(text, {"mu": ()}, backend=backend).objective(n=n, seed=11)
    for mu in (0.3, -1.2, 0.3):  # the calls draw fresh noise, the same in both
        assert _value_and_grad(backend, f, mu) == _value_and_grad(backend, g, mu)
    assert str(f.plan(mu=())) == str(g.plan(mu=())) and g.calls == f.calls


def test_the_plan_shown_is_the_plan_run():
    """The review's example: with its values the plan enumerates the Categorical, and that plan runs."""
    q = np.ones(3) / 3
    p = sg.plan(CATEGORICAL, {"q": q})
    assert p.node("y").estimator == "enumerate" and "exact sum over 3 states" in str(p)
    r = sg.estimate(CATEGORICAL, {"q": q}, n=100, seed=0)
    assert r.plan is p
    ran = p.estimate({"q": q}, n=100, seed=0)
    assert ran.plan is p and float(ran.value_stderr) == 0.0  # exact: zero variance, as the plan says
    scalar = sg.plan(CATEGORICAL)  # for a scalar q the support is unknown: another plan, and it says so
    assert scalar != p and scalar.node("y").estimator == "score"


def test_min_variance_pilots_run_when_planning_and_never_when_running(monkeypatch, backend):
    text, at = "E[cos(3 * z), z ~ Normal(mu, 1)]", {"mu": 0.3}
    calls = []
    real = variance.run_estimate
    monkeypatch.setattr(variance, "run_estimate", lambda *a, **kw: calls.append(kw["n"]) or real(*a, **kw))
    variance._OUTCOMES.clear()
    p = sg.plan(text, at, policy="min_variance", seed=5, backend=backend)
    planned = len(calls)
    assert planned == 4 and "min_variance pilot" in str(p)  # one pilot run per candidate (pathwise, score, mvd, delta)
    r = p.estimate(at, n=500, seed=5)
    again = p.estimate(at, n=500, seed=5)
    assert len(calls) == planned  # running a plan pilots nothing
    _same(r, again)
    _same(r, sg.estimate(text, at, n=500, policy="min_variance", seed=5, backend=backend))  # the pilots' outcome, kept
    assert len(calls) == planned
    with pytest.raises(sg.PlanError, match="min_variance' chooses estimators by pilot runs, which need parameter"):
        sg.plan(text, {"mu": ()}, policy="min_variance")  # shapes are not values


# -- shapes and values ---------------------------------------------------------------------------------
def test_shapes_and_values_forms_give_the_same_plan():
    q = np.array([0.2, 0.3, 0.5])
    by_values = sg.plan(CATEGORICAL, {"q": q})
    assert sg.plan(CATEGORICAL, {"q": (3,)}) is by_values
    assert sg.plan(CATEGORICAL, shapes={"q": (3,)}) is by_values
    assert sg.plan(CATEGORICAL, params={"q": q}) is by_values
    assert by_values.shapes == (("q", (3,)),)
    with pytest.raises(sg.ValidationError, match=r"mixes shapes \(tuples\) and values"):
        sg.plan("E[y * w, y ~ Bernoulli(p)]", {"p": (), "w": 2.0})
    with pytest.raises(sg.ValidationError, match=r"the shape of 'q' must be a tuple of integers >= 0, got \(3, -1\)"):
        sg.plan(CATEGORICAL, {"q": (3, -1)})
    with pytest.raises(sg.ValidationError, match=r"shapes \{'q': \(4,\)\} disagree with the shapes of params"):
        sg.plan(CATEGORICAL, shapes={"q": (4,)}, params={"q": q})
    with pytest.raises(TypeError, match="got shapes_or_params and shapes= or params="):
        sg.plan(CATEGORICAL, {"q": (3,)}, shapes={"q": (3,)})


def test_a_plan_for_shapes_refuses_parameters_of_other_shapes(backend):
    p = sg.plan(CATEGORICAL, {"q": (3,)}, backend=backend)
    with pytest.raises(sg.ValidationError, match=r"parameter 'q' has shape \(4,\), but this plan was made for shape"
                                                 r" \(3,\); make a plan for these shapes"):
        p.estimate({"q": np.ones(4) / 4}, n=10, seed=0)
    with pytest.raises(sg.ValidationError, match=r"has shape \(2,\), but this plan was made for shape \(\) \(a plan made"
                                                 r" without shapes is for scalars\)"):
        sg.plan("E[sum(z), z ~ Normal(mu, 1)]", backend=backend).estimate({"mu": np.zeros(2)}, n=10, seed=0)
    f = sg.plan("E[sum(z), z ~ Normal(mu, 1)]", {"mu": (2,)}, backend=backend).objective(n=4, seed=0)
    with pytest.raises(sg.ValidationError, match=r"parameter 'mu' has shape \(3,\), but this plan was made for shape \(2,\)"):
        f.plan(mu=(3,))
    with pytest.raises(sg.ValidationError, match=r"parameter 'w' is missing"):
        sg.plan("E[y * w, y ~ Bernoulli(p)]", backend=backend).estimate({"p": 0.5}, n=10)


# -- backend options ------------------------------------------------------------------------------------
def test_backend_options_mapping_object_and_deprecated_bare_keyword():
    pytest.importorskip("torch")
    params = {"mu": 1.5, "sigma": 0.7}
    mapping = sg.estimate(NORMAL_SQ, params, n=1000, seed=2, backend="torch", backend_options={"dtype": "float32"})
    obj = sg.estimate(NORMAL_SQ, params, n=1000, seed=2, backend=sg.get_backend("torch", dtype="float32"))
    with pytest.warns(DeprecationWarning, match=r"estimate\(\): backend options as bare keywords \(dtype='float32'\)"
                                                r" are deprecated; pass backend_options=\{'dtype': 'float32'\}"):
        bare = sg.estimate(NORMAL_SQ, params, n=1000, seed=2, backend="torch", dtype="float32")
    default = sg.estimate(NORMAL_SQ, params, n=1000, seed=2, backend="torch")
    _same(mapping, obj)
    _same(mapping, bare)
    assert mapping.grad["mu"] != default.grad["mu"]  # float32 noise and arithmetic: the option took effect
    p = sg.plan(NORMAL_SQ, params, backend="torch", backend_options={"dtype": "float32"})
    assert p.backend is sg.get_backend("torch", dtype="float32")
    _same(p.estimate(params, n=1000, seed=2), mapping)
    import torch

    out = p.objective(n=8, seed=0)(mu=torch.tensor(1.5, dtype=torch.float32), sigma=torch.tensor(0.7, dtype=torch.float32))
    assert out.dtype == torch.float32
    f = sg.compile(NORMAL_SQ, n=8, seed=0, backend="torch", backend_options={"dtype": "float32"})
    assert f.B is p.backend


@pytest.mark.parametrize("call", ["plan", "estimate", "compile", "compare"])
def test_backend_options_errors(call):
    pytest.importorskip("torch")
    run = {
        "plan": lambda **kw: sg.plan(NORMAL_SQ, **kw),
        "estimate": lambda **kw: sg.estimate(NORMAL_SQ, {"mu": 1.0, "sigma": 1.0}, n=10, seed=0, **kw),
        "compile": lambda **kw: sg.compile(NORMAL_SQ, n=10, seed=0, **kw),
        "compare": lambda **kw: sg.compare(NORMAL_SQ, {"mu": 1.0, "sigma": 1.0}, n=10, seed=0, **kw),
    }[call]
    with pytest.raises(TypeError, match=rf"{call}\(\) got an unexpected keyword argument 'dtipe' \(did you mean"
                                        r" 'dtype'\?\); backend options for torch are: device, dtype"):
        run(backend="torch", backend_options={"dtipe": "float32"})
    with pytest.raises(TypeError, match=rf"{call}\(\) got backend option 'dtype' twice"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        run(backend="torch", backend_options={"dtype": "float32"}, dtype="float64")
    with pytest.raises(TypeError, match=r"backend options for a backend instance \(torch\) are: none"):
        run(backend=sg.get_backend("torch"), backend_options={"dtype": "float32"})
    with pytest.raises(sg.ValidationError, match="backend_options must be a mapping"):
        run(backend="torch", backend_options="float32")


# -- keywords ----------------------------------------------------------------------------------------------
def _plan_estimate(**kw):
    return sg.plan(NORMAL_SQ, backend="autograd").estimate({"mu": 1.0, "sigma": 1.0}, n=10, seed=0, **kw)


def _plan_objective(**kw):
    return sg.plan(NORMAL_SQ, backend="autograd").objective(n=10, **kw)


ENTRY_POINTS = {  # name -> (call with valid arguments and extra keywords, the function whose keywords it takes)
    "plan": (lambda **kw: sg.plan(NORMAL_SQ, backend="autograd", **kw), sg.plan),
    "estimate": (lambda **kw: sg.estimate(NORMAL_SQ, {"mu": 1.0, "sigma": 1.0}, n=10, seed=0, backend="autograd", **kw),
                 sg.estimate),
    "compile": (lambda **kw: sg.compile(NORMAL_SQ, n=10, seed=0, backend="autograd", **kw), sg.compile),
    "compare": (lambda **kw: sg.compare(NORMAL_SQ, {"mu": 1.0, "sigma": 1.0}, n=10, seed=0, backend="autograd", **kw),
                sg.compare),
    "Plan.estimate": (_plan_estimate, sg.Plan.estimate),
    "Plan.objective": (_plan_objective, sg.Plan.objective),
}


def _names(fn):
    return [p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY]


def test_each_entry_points_keyword_list_is_its_signature():
    """The did-you-mean lists cannot drift from the signatures."""
    assert list(api._KEYWORDS) == _names(sg.estimate)
    assert set(compiled._KEYWORDS) == set(_names(sg.compile))
    assert list(importlib.import_module("stochgrad.compare")._KEYWORDS) == _names(sg.compare)
    assert set(api._PLAN_KEYWORDS) == {"shapes_or_params", *_names(sg.plan)}


@st.composite
def misspellings(draw):
    """An entry point and a one-edit misspelling (delete, insert, replace, swap) of one of its keywords
    that no one accepts (not a keyword of it, nor an option of the autograd backend)."""
    name = draw(st.sampled_from(sorted(ENTRY_POINTS)))
    word = draw(st.sampled_from(_names(ENTRY_POINTS[name][1])))
    i = draw(st.integers(0, len(word) - 1))
    c = draw(st.sampled_from("abcdeimnorstuxz_"))
    kind = draw(st.sampled_from(["delete", "insert", "replace", "swap"]))
    bad = {"delete": word[:i] + word[i + 1:], "insert": word[:i] + c + word[i:], "replace": word[:i] + c + word[i + 1:],
           "swap": word[:i] + word[i + 1:i + 2] + word[i:i + 1] + word[i + 2:]}[kind]
    accepted = set(inspect.signature(ENTRY_POINTS[name][1]).parameters) | {"dtype", "budget"}
    return name, word, bad, bad and bad not in accepted


@given(case=misspellings())
@settings(max_examples=150, deadline=None)
def test_a_misspelt_keyword_is_a_type_error_at_every_entry_point(case):
    name, word, bad, unknown = case
    assume(unknown)  # else the edit gave a real name (or none): nothing misspelt
    call, _ = ENTRY_POINTS[name]
    with pytest.raises(TypeError, match="unexpected keyword argument") as caught:
        call(**{bad: 0})
    if not name.startswith("Plan."):  # Python's own error for the methods; stochgrad's names the closest keyword
        message = str(caught.value)
        assert message.startswith(f"{name}() got an unexpected keyword argument {bad!r}")
        if len(word) >= 3:
            assert "(did you mean '" in message
        assert isinstance(caught.value, sg.StochgradError)


def test_sead_is_a_type_error_with_did_you_mean():
    for name in ("plan", "estimate", "compile", "compare"):
        with pytest.raises(TypeError, match=rf"{name}\(\) got an unexpected keyword argument 'sead' \(did you mean"
                                            r" 'seed'\?\)"):
            ENTRY_POINTS[name][0](sead=0)
    with pytest.raises(TypeError, match="capabilities"):
        sg.plan(NORMAL_SQ, capabilities=frozenset())  # derived from the backend now, no longer an argument


def test_deprecated_plan_forms_still_work():
    with pytest.warns(DeprecationWarning, match=r"sg.plan\(expr, \{var: estimator\}\) is deprecated"):
        old = sg.plan(NORMAL_SQ, {"z": "score"})
    assert old is sg.plan(NORMAL_SQ, estimators={"z": "score"}) and old.node("z").estimator == "score"
    with pytest.warns(DeprecationWarning, match=r"plan\(budget=...\) is deprecated"):
        small = sg.plan(CATEGORICAL, {"q": (3,)}, budget=2)
    assert small is sg.plan(CATEGORICAL, {"q": (3,)}, enumerate_budget=2) and small.node("y").estimator == "score"
    with pytest.raises(TypeError, match="estimators both as its second argument and as estimators="):
        sg.plan(NORMAL_SQ, {"z": "score"}, estimators={"z": "score"})


# -- results -----------------------------------------------------------------------------------------------
def test_estimate_to_json_and_grad_stderr():
    with pytest.warns(sg.NonFiniteWarning, match="undefined"):  # n = 1: no standard errors
        r = sg.estimate("E[sum(z**2), z ~ Normal(mu, 1)]", {"mu": np.array([0.5, 1.0])}, n=1, seed=4)
    assert r.grad_stderr is r.stderr
    js = r.to_json()
    assert js["seed"] == 4 and js["n"] == 1 and js["plan"][0]["estimator"] == "pathwise"
    assert js["grad"]["mu"] == r.grad["mu"].tolist() and js["stderr"]["mu"] == [None, None]  # NaN at n = 1
    assert js["expression"] == str(r.plan.expr)


def test_compare_reports_its_seed_and_defaults_like_estimate():
    assert inspect.signature(sg.compare).parameters["seed"].default is None
    assert inspect.signature(sg.estimate).parameters["seed"].default is None
    assert inspect.signature(sg.compile).parameters["seed"].default is None
    c = sg.compare("E[y, y ~ Bernoulli(p)]", {"p": 0.3}, n=200, backend="autograd")
    assert isinstance(c.seed, int) and c.to_json()["seed"] == c.seed
    again = sg.compare("E[y, y ~ Bernoulli(p)]", {"p": 0.3}, n=200, backend="autograd", seed=c.seed)
    assert [r.grad for r in again.rows] == [r.grad for r in c.rows]


# -- layering ----------------------------------------------------------------------------------------------
PACKAGE = pathlib.Path(sg.__file__).parent


def _imports(module):
    tree = ast.parse((PACKAGE / module).read_text())
    top = {node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.level}
    nested = [node.module for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
              for node in ast.walk(fn) if isinstance(node, ast.ImportFrom) and node.level]
    return top, nested


@pytest.mark.parametrize("module", ["planner.py", "variance.py", "run.py", "compiled.py", "api.py", "validation.py",
                                    "parser.py"])
def test_the_layers_below_the_api_do_not_import_it(module):
    top, nested = _imports(module)
    assert nested == []  # no import inside a function, to dodge a cycle or otherwise
    if module != "api.py":
        assert "api" not in top
    assert sg.parse is sg.parser.parse and api.as_expression is sg.parser.as_expression
