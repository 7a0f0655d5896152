"""Sharded estimates and data-parallel objectives on torch.distributed (stochgrad.distributed).

Two CPU processes in a gloo group (tests/_distributed_worker.py, spawned once for every check here,
with a bounded time: a hang fails) run sharded estimates, mismatched calls and DDP training; this
process runs the same estimates in one process and compares.  The references are single-process
runs of the same code (the contract is "equal to the single-process run"), and, for the training
noise, the statistics of independent N(0, 1) draws.
"""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import stochgrad as sg
from stochgrad.distributed import DistributedError, DistributedMismatchError

torch = pytest.importorskip("torch")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _distributed_worker as W  # noqa: E402

RTOL = 1e-12


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    env = {**os.environ, "PYTHONPATH": os.path.dirname(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, os.path.join(HERE, "_distributed_worker.py"), str(out)], env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [pickle.loads((out / f"rank{r}.pkl").read_bytes()) for r in (0, 1)]


def close(a, b):
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=RTOL, atol=0)


def same_estimate(got, r):
    close(got["value"], r.value)
    close(got["value_stderr"], r.value_stderr)
    assert got["grad"].keys() == r.grad.keys()
    for k in r.grad:
        close(got["grad"][k], r.grad[k])
        close(got["stderr"][k], r.stderr[k])
    assert got["n"] == r.n and got["seed"] == r.seed and got["chunk_size"] == r.chunk_size
    assert got["tail_index"].keys() == r.tail_index.keys()
    for k in r.tail_index:
        close(got["tail_index"][k], r.tail_index[k])


@pytest.mark.parametrize("backend", W.BACKENDS)
@pytest.mark.parametrize("case", W.CASES, ids=[c[0] for c in W.CASES])
def test_sharded_equals_single_process(ranks, case, backend):
    name, text, params, estimators = case
    r = sg.estimate(text, params, n=W.N, seed=W.SEED, chunk_size=65536, backend=backend, estimators=estimators)
    assert r.n == W.N and len(r.plan.nodes) >= 1
    for rank in ranks:
        same_estimate(rank["estimates"][name, backend], r)
    a, b = (rank["estimates"][name, backend] for rank in ranks)
    assert a["value"] == b["value"] and all(np.array_equal(a["stderr"][k], b["stderr"][k]) for k in a["stderr"])


def test_plans_are_the_ones_meant():
    """The three cases exercise pathwise, score with leave-one-out and enumeration."""
    plans = [sg.plan(text, params, estimators=est) for _, text, params, est in W.CASES]
    assert [n.estimator for n in plans[0].nodes] == ["pathwise"]
    assert "leave-one-out" in str(plans[1]) and plans[1].nodes[0].estimator.startswith("score")
    assert any(n.estimator.startswith("enumerat") for n in plans[2].nodes)


def test_plan_estimate_default_chunks_common_seed_progress_on_rank_0(ranks):
    a, b = (rank["estimates"]["plan_default"] for rank in ranks)
    assert a["seed"] == b["seed"]  # seed=None: rank 0's fresh seed on every rank
    p = sg.plan(W.CASES[0][1], W.CASES[0][2], backend="torch")
    same_estimate(a, p.estimate(W.CASES[0][2], n=W.N, seed=a["seed"]))
    same_estimate(b, p.estimate(W.CASES[0][2], n=W.N, seed=a["seed"]))
    seen0, seen1 = ranks[0]["estimates"]["progress"], ranks[1]["estimates"]["progress"]
    assert seen0 and seen0[-1] == (W.N, W.N) and all(t == W.N for _, t in seen0) and seen1 == []


@pytest.mark.parametrize("field", ["seed", "parameters", "expression"])
def test_disagreeing_ranks_fail_by_name_on_every_rank(ranks, field):
    for rank in ranks:
        kind, message, seconds = rank["mismatches"][field]
        assert kind == DistributedMismatchError.__name__ and f"disagree on {field}" in message
        assert "rank 1 differs" in message and seconds < 5


def test_a_rank_failing_stops_every_rank(ranks):
    kind0, message0, s0 = ranks[0]["mismatches"]["invalid"]
    kind1, message1, s1 = ranks[1]["mismatches"]["invalid"]
    assert kind1 == "ValidationError" and "sigma" in message1  # the failing rank: its own error
    assert kind0 == DistributedError.__name__ and "rank 1" in message0 and "sigma" in message0
    assert s0 < 5 and s1 < 5
    for rank in ranks:  # a moving average cannot be split across chunks: refused alike on every rank
        kind, message, _ = rank["mismatches"]["moving_average"]
        assert kind == DistributedError.__name__ and "moving average" in message
    text, params = W.CASES[0][1], W.CASES[0][2]
    for rank in ranks:  # and the group still works afterwards
        same_estimate(rank["mismatches"]["after"], sg.estimate(text, params, n=1000, seed=1))


def test_no_process_group_is_a_named_error():
    assert not torch.distributed.is_initialized()
    with pytest.raises(DistributedError, match="init_process_group"):
        sg.estimate("E[z, z ~ Normal(mu, 1)]", {"mu": 0.0}, n=10, distributed=True)
    with pytest.raises(DistributedError, match="init_process_group"):
        sg.plan("E[z, z ~ Normal(mu, 1)]", {"mu": 0.0}).estimate({"mu": 0.0}, n=10, distributed=True)
    with pytest.raises(DistributedError, match="init_process_group"):
        sg.compile("E[z, z ~ Normal(mu, 1)]", backend="torch", n=4, distributed=True)
    with pytest.raises(sg.ValidationError, match="distributed must be True or False"):
        sg.estimate("E[z, z ~ Normal(mu, 1)]", {"mu": 0.0}, n=10, distributed="yes")


def test_training_noise_is_independent_per_rank(ranks):
    d = {(r, s): ranks[r]["training"]["draws", s] for r in (0, 1) for s in (7, 8)}
    m = len(d[0, 7])
    for x in d.values():  # each rank's draws are N(0, 1): mean and variance within 5 standard errors
        assert abs(x.mean()) < 5 / np.sqrt(m) and abs(x.var() - 1) < 5 * np.sqrt(2 / m)
    bound = 5 / np.sqrt(m)  # independent draws: correlation within 5 standard errors of 0
    assert abs(np.corrcoef(d[0, 7], d[1, 7])[0, 1]) < bound  # ranks of one seed
    assert abs(np.corrcoef(d[1, 7], d[0, 8])[0, 1]) < bound  # rank 1 of seed s is not rank 0 of seed s + 1
    for r in (0, 1):  # the rank's noise is a plain objective's with the rank's hashed seed
        seed = ranks[r]["training"]["noise_seed", 7]
        f = sg.compile(W.MOVING, backend="torch", n=1, seed=seed)
        mu = torch.zeros(m, dtype=torch.float64, requires_grad=True)
        f(mu=mu).backward()
        np.testing.assert_array_equal((mu.grad / 2).numpy(), d[r, 7])


def test_moving_average_is_shared_by_the_ranks(ranks):
    decay, calls = 0.8, 3
    a, b = ranks[0]["training"]["moving"], ranks[1]["training"]["moving"]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # the same state on every rank
    means = []  # each rank's own batch means, from a plain objective on the rank's noise
    for r in (0, 1):
        f = sg.compile(W.MOVING, backend="torch", n=16, seed=ranks[r]["training"]["noise_seed", 7],
                       estimators={"z": sg.Score(baseline=sg.MovingAverage(decay))})
        states = []
        for _ in range(calls):
            f(mu=torch.full((5,), 0.5, dtype=torch.float64, requires_grad=True))
            states.append(np.array(f.baseline_state["z"].value, copy=True))
        means.append([states[0]] + [(states[t] - decay * states[t - 1]) / (1 - decay) for t in range(1, calls)])
    expected = (means[0][0] + means[1][0]) / 2
    close(a[0], expected)
    for t in range(1, calls):  # b_t = decay b_{t-1} + (1 - decay) (mean over the ranks of their batch means)
        expected = decay * expected + (1 - decay) * (means[0][t] + means[1][t]) / 2
        np.testing.assert_allclose(a[t], expected, rtol=1e-9)
    assert not np.allclose(a[-1], means[0][0])  # not a rank's own average


def test_ddp_training_keeps_the_ranks_parameters_equal(ranks):
    a, b = ranks[0]["training"]["ddp"], ranks[1]["training"]["ddp"]
    np.testing.assert_array_equal(a["params"], b["params"])
    np.testing.assert_array_equal(a["initial"], b["initial"])
    assert np.abs(a["params"] - a["initial"]).max() > 1e-4  # it trained
    assert len(a["losses"]) == 6 and a["losses"] == b["losses"] and a["losses"][-1] < a["losses"][0]
    assert np.isfinite(a["test"])


def test_cli_under_torchrun_prints_once():
    torchrun = pytest.importorskip("torch.distributed.run")
    text, n = "E[z**2, z ~ Normal(mu, sigma)]", 3 * 65536 + 7
    args = ["estimate", text, "--at", "mu=1", "--at", "sigma=2", "-n", str(n), "--seed", "3", "--json", "--no-exact"]
    env = {**os.environ, "PYTHONPATH": os.path.dirname(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", torchrun.__name__, "--nproc_per_node=2", "-m", "stochgrad", *args,
                           "--distributed"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count('"expression"') == 1  # one JSON document: rank 0's
    got = json.loads(proc.stdout)
    r = sg.estimate(text, {"mu": 1.0, "sigma": 2.0}, n=n, seed=3)
    assert got["n"] == n
    close(got["value"], r.value)
    close(got["stderr"]["sigma"], r.stderr["sigma"])
