"""Smoke test of benchmarks/bench_estimators.py: the harness end to end at tiny sizes, and its
hand-written leave-one-out estimator against stochgrad's ``score`` (leave-one-out) for the same samples.

The benchmark is torch-only (its reference is plain torch), so these tests run on the torch backend."""

import math
import pathlib
import sys

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_estimators as bench
import discrete_vae_reference as ref

SIZES = {"bernoulli": (12, 1), "categorical": (3, 4)}


def _grads(model, loss, x):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss(x), model.params())])


@pytest.mark.parametrize("kind", ["bernoulli", "categorical"])
@pytest.mark.parametrize("seed", [0, 3])
def test_hand_loo_equals_stochgrad_score_for_the_same_samples(kind, seed):
    """stochgrad's score + leave-one-out and the hand-written torch LOO give the same gradient (every
    encoder and decoder parameter) when the hand-written one is fed the z's stochgrad's cost saw."""
    train, _ = ref.load_data()
    x = train[:ref.BATCH]
    model = bench.Model(kind, *SIZES[kind], hidden=0, seed=seed)
    n = 3
    model.capture = []
    g_sg = _grads(model, model.objective("score", n, seed), x)
    (z,) = model.capture
    model.capture = None
    assert z.shape[:2] == (n, ref.BATCH)
    g_hand = _grads(model, bench.hand_loo(model, n, torch.Generator(), z=z), x)
    assert torch.allclose(g_sg, g_hand, rtol=1e-10, atol=1e-10), float((g_sg - g_hand).abs().max())
    # a deliberately wrong hand-written baseline (the mean including the sample itself) differs clearly

    def biased(xx):
        lg = model.logits(xx)
        f = model.loglik(xx, z)
        logq = model.log_q(lg, z)
        b = f.detach().mean(0, keepdim=True)
        return (model.kl(lg) - (f + (f.detach() - b) * (logq - logq.detach())).mean(0)).mean()

    g_wrong = _grads(model, biased, x)
    assert (g_wrong - g_hand).abs().max() > 1e-3 * g_hand.abs().max()


def test_quick_run_end_to_end():
    """``--quick`` over both models with the registry's default estimators: every estimator is either
    measured (finite numbers) or refused with its reason; the hand-written LOO row is first."""
    lines = []
    results = bench.main(["--quick", "--threads", "1"], out=lines.append)
    assert set(results) == {("bernoulli", 1), ("categorical", 1)}
    for (kind, _), rows in results.items():
        assert rows[0]["estimator"] == bench.HAND and rows[0]["variance_ratio"] == 1.0
        names = {r["estimator"] for r in rows}
        assert "score" in names and "relaxed" in names
        assert "disarm" in names  # Bernoulli, and Categorical through its stick-breaking form
        for r in rows:
            if r["refused"]:
                assert r["estimator"] in r["refused"] or "z" in r["refused"]
                continue
            values = [r["variance"], r["var_trained"], r["ms_step"], r["ratio"], *r["at_steps"]]
            assert all(math.isfinite(v) for v in values), r
            assert r["variance"] >= 0 and r["at_steps"][0] > 0
    text = "\n".join(lines)
    assert "hand LOO" in text and "load average" in text


def test_requested_estimators_refused_by_name():
    model = bench.Model("categorical", *SIZES["categorical"], hidden=0, seed=0)
    got = {label: (spec, refusal) for label, spec, refusal in
           bench.candidates(model, ["pathwise", "nope", "relaxed:temperature=0.3"])}
    assert got["pathwise"][0] is None and "Categorical" in got["pathwise"][1]
    assert got["nope"][0] is None and "unknown estimator 'nope'" in got["nope"][1]
    assert got["relaxed:temperature=0.3"][0].temperature == 0.3 and not got["relaxed:temperature=0.3"][1]
    # the registry's defaults for a Bernoulli node: those that give its logits a gradient, rebar included
    names = [label for label, _, _ in bench.candidates(bench.Model("bernoulli", 4, 1, 0, 0), None)]
    assert {"score", "disarm", "arm", "rebar", "relaxed"} <= set(names) and "detached" not in names
