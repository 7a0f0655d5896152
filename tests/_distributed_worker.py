"""The ranks of tests/test_distributed.py: ``python tests/_distributed_worker.py OUT [WORLD]``.

Spawns WORLD (default 2) CPU processes in a gloo group (collective timeout 30 s: a hang fails, it
does not wait forever); each runs every scenario below and pickles what it saw to ``OUT/rank{r}.pkl``.
The test compares those with single-process runs of its own.
"""

import os
import pickle
import socket
import sys
import time
from datetime import timedelta

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE, os.path.join(os.path.dirname(HERE), "examples")]

#: (name, text, params, estimators): one pathwise, one score + leave-one-out, one enumerated plan
CASES = [
    ("pathwise", "E[(z - 0.3)**2 * a, z ~ Normal(mu, sigma)]", {"mu": 0.7, "sigma": 1.3, "a": 2.0}, None),
    ("score_loo", "E[z**3 + a * z, z ~ Normal(mu, sigma)]", {"mu": 0.4, "sigma": 0.9, "a": 1.5}, {"z": "score"}),
    ("enumerate", "E[(y + z)**2 * a, y ~ Bernoulli(p), z ~ Normal(mu, 1)]", {"p": 0.3, "mu": 0.5, "a": 1.2}, None),
]
BACKENDS = ("autograd", "torch")
N = 5 * 65536 + 1234  # five whole noise blocks and a part: rank 0 runs chunks 0, 2, 4, rank 1 chunks 1, 3, 5
SEED = 20261203
MOVING = "E[z**2, z ~ Normal(mu, 1)]"


def summary(r):
    return {"value": r.value, "value_stderr": r.value_stderr, "grad": dict(r.grad), "stderr": dict(r.stderr),
            "n": r.n, "seed": r.seed, "chunk_size": r.chunk_size, "tail_index": dict(r.tail_index)}


def estimates(sg, rank):
    out = {}
    for name, text, params, estimators in CASES:
        for backend in BACKENDS:
            r = sg.estimate(text, params, n=N, seed=SEED, chunk_size=65536, backend=backend, estimators=estimators,
                            distributed=True)
            out[name, backend] = summary(r)
    seen = []  # Plan.estimate, default chunks, seed=None: rank 0's fresh seed on every rank; progress on rank 0
    p = sg.plan(CASES[0][1], CASES[0][2], backend="torch")
    out["plan_default"] = summary(p.estimate(CASES[0][2], n=N, distributed=True,
                                             progress=lambda done, total: seen.append((done, total))))
    out["progress"] = seen
    return out


def mismatches(sg, rank):
    text, params = CASES[0][1], CASES[0][2]
    bad = {
        "seed": lambda: sg.estimate(text, params, n=1000, seed=rank, distributed=True),
        "parameters": lambda: sg.estimate(text, {**params, "mu": 0.7 + rank}, n=1000, seed=1, distributed=True),
        "expression": lambda: sg.estimate(text if rank == 0 else text.replace("0.3", "0.4"), params, n=1000, seed=1,
                                          distributed=True),
        "invalid": lambda: sg.estimate(text, {**params, "sigma": 1.3 if rank == 0 else float("nan")}, n=1000, seed=1,
                                       distributed=True),
        "moving_average": lambda: sg.estimate(text, params, n=1000, seed=1, distributed=True,
                                              estimators={"z": sg.Score(baseline=sg.MovingAverage(0.9))}),
    }
    out = {}
    for name, run in bad.items():
        start = time.perf_counter()
        try:
            run()
            out[name] = (None, "", time.perf_counter() - start)
        except Exception as exc:  # noqa: BLE001  (the test reads the class and message)
            out[name] = (type(exc).__name__, str(exc), time.perf_counter() - start)
    out["after"] = summary(sg.estimate(text, params, n=1000, seed=1, distributed=True))  # the group still works
    return out


def training(sg, rank):
    import torch

    out = {}
    for seed in (7, 8):  # grad of E[z**2] at mu = 0 with n = 1 is 2 z: the rank's draws
        f = sg.compile(MOVING, backend="torch", n=1, seed=seed, distributed=True)
        mu = torch.zeros(4000, dtype=torch.float64, requires_grad=True)
        f(mu=mu).backward()
        out["draws", seed] = (mu.grad / 2).numpy().copy()
        out["noise_seed", seed] = f.noise_seed
    f = sg.compile(MOVING, backend="torch", n=16, seed=7, distributed=True,
                   estimators={"z": sg.Score(baseline=sg.MovingAverage(0.8))})
    values = []
    for _ in range(3):
        f(mu=torch.full((5,), 0.5, dtype=torch.float64, requires_grad=True))
        values.append(np.array(f.baseline_state["z"].value, copy=True))
    out["moving"] = values
    import ddp_vae

    out["ddp"] = ddp_vae.train(rank=rank, world=torch.distributed.get_world_size(), steps=6, batch=50, log=False)
    return out


def run(rank, world, port, outdir):
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=30))
    import stochgrad as sg

    got = {}
    for name, scenario in (("estimates", estimates), ("mismatches", mismatches), ("training", training)):
        start = time.perf_counter()
        got[name] = scenario(sg, rank)
        got[name, "seconds"] = time.perf_counter() - start
    with open(os.path.join(outdir, f"rank{rank}.pkl"), "wb") as fh:
        pickle.dump(got, fh)
    dist.destroy_process_group()


def main():
    import torch.multiprocessing as mp

    outdir, world = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(run, args=(world, port, outdir), nprocs=world, join=True)


if __name__ == "__main__":
    main()
