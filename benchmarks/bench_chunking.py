"""Memory-bound work: ``sg.estimate`` with automatic chunks against one vectorized hand-written pass.

When ``n x event size`` is large (>= 1e7 entries), a single vectorized pass streams arrays of tens
or hundreds of MB through memory several times; ``sg.estimate`` cuts the samples into chunks of
about ``stochgrad.api.CHUNK_ENTRIES`` entries (a few MB per array) and accumulates, so it should be
*faster* than naive hand-written code (target: <= 0.6x), while still computing standard errors.

Problems (float64, CPU, torch):

* 10-category Gumbel-softmax: ``E[sum(w * y), y ~ Categorical(logits=l)]`` at temperature 0.5,
  ``l = 0``, ``w = 0..9``, differentiated in ``l`` only (``wrt=["l"]``), as the hand-written pass
  ``bench_discrete_overhead.hand_gumbel`` is;
* pathwise Normal: ``E[z**2, z ~ Normal(12, 42)]`` -- ``bench_overhead.hand_torch`` and, doing
  the same extra work as stochgrad, ``hand_torch_with_stderr``.

Interleaved rounds, median of per-round ratios.

    python benchmarks/bench_chunking.py [--rounds 7] [--threads 2] [--load]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import stochgrad as sg
from stochgrad.api import auto_chunk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_discrete_overhead import hand_gumbel  # noqa: E402
from bench_overhead import compare, hand_torch, hand_torch_with_stderr  # noqa: E402

GUMBEL = "E[sum(w * y), y ~ Categorical(logits=l)]"
NORMAL = "E[z**2, z ~ Normal(mu, sigma)]"
GUMBEL_PARAMS = {"l": np.zeros(10), "w": np.arange(10.0)}
NORMAL_PARAMS = {"mu": 12.0, "sigma": 42.0}


def gumbel(n: int, seed: int) -> sg.Estimate:
    return sg.estimate(GUMBEL, GUMBEL_PARAMS, n=n, backend="torch", seed=seed,
                       estimators={"y": "relaxed:temperature=0.5"}, wrt=["l"])


def normal(n: int, seed: int) -> sg.Estimate:
    return sg.estimate(NORMAL, NORMAL_PARAMS, n=n, backend="torch", seed=seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--load", action="store_true",
                    help="the loaded condition: a busy process (a Python spin loop) runs beside the benchmark")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.load else None
    try:
        run(args.rounds)
    finally:
        if busy is not None:
            busy.kill()


def run(rounds: int) -> None:
    print(f"load {os.getloadavg()[0]:.2f}, torch {torch.__version__}, threads={torch.get_num_threads()}")
    rows = [
        ("10-category Gumbel-softmax", gumbel, hand_gumbel, 1_000_000, 10),
        ("10-category Gumbel-softmax", gumbel, hand_gumbel, 3_000_000, 10),
        ("pathwise Normal", normal, hand_torch, 10_000_000, 1),
        ("pathwise Normal (hand + stderr)", normal, hand_torch_with_stderr, 10_000_000, 1),
    ]
    print(f"{'problem':<34}{'n':>11}{'entries':>9}{'chunk':>9}{'stochgrad':>11}{'hand':>11}{'ratio':>8}")
    for name, ours, theirs, n, width in rows:
        est = ours(min(n, 1 << 16), 0)
        chunk = est.chunk_size if n <= 1 << 16 else auto_chunk(est.plan, {k: np.asarray(v) for k, v in (
            {"l": GUMBEL_PARAMS["l"]} if width > 1 else NORMAL_PARAMS).items()})
        a, b, ratio = compare(name, ours, theirs, n, rounds)
        print(f"{name:<34}{n:>11,}{n * width:>9.0e}{chunk:>9,}{a:>10.3f}s{b:>10.3f}s{ratio:>7.2f}x")


if __name__ == "__main__":
    main()
