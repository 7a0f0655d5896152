"""Memory-bounded estimation: n far beyond what one vectorized pass could hold.

Runs ``E[z**2, z ~ Normal(mu, sigma)]`` with n = 1e8 samples (default) in chunks, reporting the
peak resident memory of the process and the time; a single pass over 1e8 float64 samples would
need several GB per intermediate array.  Also checks a chunked run against the unchunked one at a
size where both fit (they draw the same noise, so they agree to rounding).

    python benchmarks/bench_memory.py [--n 100000000] [--chunk-size N] [--backend torch]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np

import stochgrad as sg
from stochgrad.cli_rich import progress_bar

EXPR = "E[z**2, z ~ Normal(mu, sigma)]"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=float, default=1e8)
    ap.add_argument("--chunk-size", type=int, default=None)
    ap.add_argument("--backend", default="torch")
    args = ap.parse_args()
    n = int(args.n)

    small = 3 * (1 << 16) + 5
    whole = sg.estimate(EXPR, {"mu": 1.0, "sigma": 2.0}, n=small, backend=args.backend, seed=1)
    parts = sg.estimate(EXPR, {"mu": 1.0, "sigma": 2.0}, n=small, backend=args.backend, seed=1, chunk_size=1 << 16)
    diff = max(abs(whole.grad[k] - parts.grad[k]) for k in whole.grad)
    print(f"chunked vs unchunked at n={small}: largest gradient difference {diff:.2e}")

    before = peak_rss_mb()
    t0 = time.perf_counter()
    with progress_bar(sys.stderr) as bar:
        r = sg.estimate(EXPR, {"mu": 1.0, "sigma": 2.0}, n=n, backend=args.backend, seed=0,
                        chunk_size=args.chunk_size, progress=bar)
    seconds = time.perf_counter() - t0
    print(f"n = {n:,} on {r.backend}, chunks of {r.chunk_size:,}: {seconds:.1f} s, "
          f"peak RSS {peak_rss_mb():.0f} MB (before: {before:.0f} MB)")
    print(r)
    exact = {"mu": 2.0, "sigma": 4.0}
    print("z-scores:", {k: round((r.grad[k] - exact[k]) / r.stderr[k], 2) for k in exact})
    print(f"one float64 array of n samples would take {n * 8 / 2**20:,.0f} MB")
    assert np.isfinite(r.value)


if __name__ == "__main__":
    main()
