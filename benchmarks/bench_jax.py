"""A jitted stochgrad objective on the jax backend against hand-written ``jax.jit`` code doing the
same work (issue 16): value and gradient of a Monte Carlo estimate, at n = 1e3, 1e5, 1e6.

Cases (each hand-written version draws its noise with ``jax.random`` from the same kind of key and
computes the same surrogate):

* ``pathwise``: ``E[z**2, z ~ Normal(mu, sigma)]``, reparameterized;
* ``score``: ``E[(b - 0.3)**2, b ~ Bernoulli(p)]``, the score function with the leave-one-out
  baseline (Kool et al. 2019), ``(f - b) grad log q`` with ``b_i`` the mean of the other samples.

Compile time (the first call) is reported separately; then rounds alternate the two functions
(``--rounds`` of ``--reps`` calls each, after ``block_until_ready``), and the figure is the median over
rounds of the ratio stochgrad / hand-written.  ``uptime`` is printed with the figures.  Run by hand::

    python benchmarks/bench_jax.py [--sizes 1000 100000 1000000] [--rounds 15] [--reps 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

import jax
import jax.numpy as jnp

import stochgrad as sg


def hand_pathwise(n: int):
    def f(mu, sigma, key):
        z = mu + sigma * jax.random.normal(key, (n,))
        return jnp.mean(z ** 2)
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1)))


def hand_score(n: int):
    def f(p, key):
        b = (jax.random.uniform(key, (n,)) < p).astype(jnp.result_type(float))
        cost = (b - 0.3) ** 2
        logq = b * jnp.log(p) + (1 - b) * jnp.log1p(-p)
        base = (jnp.sum(cost) - cost) / (n - 1)
        c = jax.lax.stop_gradient(cost - base)
        return jnp.mean(cost + c * (logq - jax.lax.stop_gradient(logq)))
    return jax.jit(jax.value_and_grad(f))


def ours_pathwise(n: int):
    f = sg.compile("E[z**2, z ~ Normal(mu, sigma)]", backend="jax", n=n, validate=False)
    return jax.jit(jax.value_and_grad(lambda mu, sigma, key: f(key=key, mu=mu, sigma=sigma), argnums=(0, 1)))


def ours_score(n: int):
    f = sg.compile("E[(b - 0.3)**2, b ~ Bernoulli(p)]", backend="jax", n=n, validate=False,
                   estimators={"b": "score"})
    return jax.jit(jax.value_and_grad(lambda p, key: f(key=key, p=p)))


CASES = {"pathwise": (hand_pathwise, ours_pathwise, (0.5, 1.3)), "score": (hand_score, ours_score, (0.4,))}


def _timed(fn, args, reps: int) -> float:
    out = None
    t = time.perf_counter()
    for _ in range(reps):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000, 1_000_000])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    a = ap.parse_args()
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
          f"| jax {jax.__version__}, x64 {jax.config.jax_enable_x64}, cpu count {os.cpu_count()}")
    print("case      n         compile hand / ours (s)   per call hand / ours (ms)   ratio (median over rounds)")
    for case in a.cases:
        make_hand, make_ours, args = CASES[case]
        for n in a.sizes:
            key = jax.random.key(0)
            fns = {"hand": make_hand(n), "ours": make_ours(n)}
            compile_s = {}
            for name, fn in fns.items():
                t = time.perf_counter()
                jax.block_until_ready(fn(*args, key))
                compile_s[name] = time.perf_counter() - t
            times: dict[str, list[float]] = {"hand": [], "ours": []}
            for r in range(a.rounds):
                order = ("hand", "ours") if r % 2 == 0 else ("ours", "hand")
                for name in order:
                    times[name].append(_timed(fns[name], (*args, jax.random.key(r + 1)), a.reps))
            ratio = statistics.median(o / h for o, h in zip(times["ours"], times["hand"]))
            print(f"{case:9s} {n:<9,d} {compile_s['hand']:.2f} / {compile_s['ours']:.2f}"
                  f"                 {1e3 * statistics.median(times['hand']):.3f} / {1e3 * statistics.median(times['ours']):.3f}"
                  f"             {ratio:.2f}")
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
