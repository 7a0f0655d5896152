"""Sharded estimates: one process against W processes (gloo, CPU) at n = 1e8 samples.

Each configuration is a fresh group of W spawned processes (one torch/numpy thread each); the
time is that of ``sg.estimate(..., distributed=True)`` on rank 0, from a barrier before it to its
return (the exchange included, process start-up and imports not).  The estimates of every W are
checked equal to the W = 1 run to 1e-12 relative.  On a shared machine the figures move with the
load: the script prints ``os.getloadavg()`` before each run.

    python benchmarks/bench_distributed.py [--n 100000000] [--procs 1 2] [--backend torch]
"""

import argparse
import os
import pickle
import socket
import sys
import tempfile
import time
from datetime import timedelta

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TEXT = "E[(z - 0.3)**2 * a, z ~ Normal(mu, sigma)]"
PARAMS = {"mu": 0.7, "sigma": 1.3, "a": 2.0}


def _rank(rank, world, port, args, path):
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=600))
    import stochgrad as sg

    sg.estimate(TEXT, PARAMS, n=1 << 16, seed=0, backend=args.backend, distributed=True)  # warm
    dist.barrier()
    start = time.perf_counter()
    r = sg.estimate(TEXT, PARAMS, n=args.n, seed=1, backend=args.backend, distributed=True)
    seconds = time.perf_counter() - start
    if rank == 0:
        with open(path, "wb") as fh:
            pickle.dump((seconds, r.value, dict(r.grad), r.value_stderr, dict(r.stderr)), fh)
    dist.destroy_process_group()


def run(world, args):
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out.pkl")
        mp.spawn(_rank, args=(world, port, args, path), nprocs=world, join=True)
        with open(path, "rb") as fh:
            return pickle.load(fh)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=float, default=1e8)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--backend", default="torch")
    args = ap.parse_args()
    args.n = int(args.n)
    print(f"{TEXT}, n = {args.n:.3g}, backend {args.backend}, {os.cpu_count()} CPUs")
    base = None
    for world in args.procs:
        load = os.getloadavg()[0]
        seconds, value, grad, value_se, stderr = run(world, args)
        line = (f"W = {world}: {seconds:7.2f} s  ({args.n / seconds / 1e6:6.1f} M samples/s)  value {value:.6f}"
                f" ± {value_se:.2g}   load before {load:.2f}")
        if base is None:
            base = (seconds, value, grad, stderr)
        else:
            rel = max(abs(value - base[1]) / abs(base[1]),
                      *(abs(grad[k] - base[2][k]) / abs(base[2][k]) for k in grad),
                      *(abs(stderr[k] - base[3][k]) / abs(base[3][k]) for k in stderr))
            line += f"   speed-up {base[0] / seconds:4.2f}x, largest relative difference from W = 1: {rel:.1e}"
            assert np.isfinite(rel) and rel < 1e-12, rel
        print(line, flush=True)


if __name__ == "__main__":
    main()
