"""Overhead of ``sg.estimate`` against hand-written vectorized code, same estimator.

Problem: pathwise gradient of E[z**2], z ~ Normal(mu, sigma), float64 on the CPU.

* torch: ``sg.estimate(..., backend="torch")`` against a hand-written torch function
  (randn, mu + sigma * eps, mean of z**2, torch.autograd.grad), and against the same function
  drawing its normals from numpy's PCG64 as stochgrad's torch backend does in float64 on the CPU
  (so that ratio is the overhead alone), and against the leanest hand-written torch that computes
  what ``estimate`` does: per-sample gradients from per-sample leaves, and standard errors.  A second hand-written
  variant also computes the standard errors (per-sample gradients 2z and 2z*eps, their
  standard deviations) since stochgrad always reports them.
* autograd: ``sg.estimate(..., backend="autograd")`` against hand-written autograd.
* ``sg.compile`` (torch and autograd) plus one reverse pass, against the same hand-written code:
  the same work, since an objective returns the estimate alone (no per-sample gradients, no
  standard errors).

Rounds are interleaved in one process; the figure reported is the median over rounds of
the per-round time ratio.  Run by hand (not part of the tests):

    python benchmarks/bench_overhead.py [--rounds 30] [--sizes 1000 100000 1000000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

import stochgrad as sg

EXPR = "E[z**2, z ~ Normal(mu, sigma)]"
PARAMS = {"mu": 12.0, "sigma": 42.0}


def hand_torch(n: int, seed: int) -> tuple[float, float, float]:
    import torch

    g = torch.Generator().manual_seed(seed)
    mu = torch.tensor(12.0, dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor(42.0, dtype=torch.float64, requires_grad=True)
    eps = torch.randn(n, generator=g, dtype=torch.float64)
    z = mu + sigma * eps
    loss = (z * z).mean()
    gm, gs = torch.autograd.grad(loss, [mu, sigma])
    return loss.item(), gm.item(), gs.item()


def hand_torch_numpy_noise(n: int, seed: int) -> tuple[float, float, float]:
    """hand_torch with its normals from numpy's PCG64, as stochgrad's torch backend draws them in
    float64 on the CPU: the ratio to this one is the overhead alone, without the faster noise."""
    import torch

    eps = torch.from_numpy(np.random.Generator(np.random.PCG64(seed)).standard_normal(n))
    mu = torch.tensor(12.0, dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor(42.0, dtype=torch.float64, requires_grad=True)
    z = mu + sigma * eps
    loss = (z * z).mean()
    gm, gs = torch.autograd.grad(loss, [mu, sigma])
    return loss.item(), gm.item(), gs.item()


def hand_torch_same_work(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """What ``sg.estimate`` computes, written by hand as leanly as torch allows: numpy noise, one
    leaf copy of each parameter per sample, one reverse pass for every sample's gradient, and the
    mean and standard error of value and gradients from one stacked array.  The floor for an
    implementation of ``estimate``'s semantics."""
    import torch

    from stochgrad.noise import NumpyStream

    mu = torch.as_tensor(np.asarray(12.0)).expand(n).requires_grad_(True)
    sigma = torch.as_tensor(np.asarray(42.0)).expand(n).requires_grad_(True)
    eps = np.empty(n)
    NumpyStream(seed).generator().standard_normal(out=eps)
    z = mu + sigma * torch.from_numpy(eps)
    f = z * z
    gm, gs = torch.autograd.grad(f.sum() / n, [mu, sigma])
    rows = torch.stack([f.detach(), gm * n, gs * n]).numpy()
    s1, s2 = rows.sum(axis=1), np.einsum("ij,ij->i", rows, rows)
    mean = s1 / n
    return mean, np.sqrt((s2 - s1 * mean) / (n - 1) / n)


def hand_torch_with_stderr(n: int, seed: int) -> tuple[float, ...]:
    import torch

    g = torch.Generator().manual_seed(seed)
    mu = torch.tensor(12.0, dtype=torch.float64)
    sigma = torch.tensor(42.0, dtype=torch.float64)
    eps = torch.randn(n, generator=g, dtype=torch.float64)
    z = mu + sigma * eps
    f = z * z
    d_mu, d_sigma = 2 * z, 2 * z * eps  # per-sample pathwise gradients, by hand
    root_n = n**0.5
    return (f.mean().item(), (f.std() / root_n).item(), d_mu.mean().item(), (d_mu.std() / root_n).item(),
            d_sigma.mean().item(), (d_sigma.std() / root_n).item())


def hand_autograd(n: int, seed: int) -> tuple[float, np.ndarray]:
    from autograd import value_and_grad

    eps = np.random.Generator(np.random.PCG64(seed)).standard_normal(n)

    def loss(p: np.ndarray) -> float:
        z = p[0] + p[1] * eps
        return (z * z).mean()

    return value_and_grad(loss)(np.array([12.0, 42.0]))


def stochgrad_fn(backend: str) -> Callable[[int, int], sg.Estimate]:
    return lambda n, seed: sg.estimate(EXPR, PARAMS, n=n, backend=backend, seed=seed)


def compiled_fn(backend: str) -> Callable[[int, int], object]:
    """``sg.compile`` (one objective per n, made on first use) and one reverse pass: the same work as
    the plain hand-written gradient (no per-sample gradients, no standard errors)."""
    objectives: dict[int, sg.Objective] = {}

    def run(n: int, seed: int) -> object:
        if n not in objectives:
            objectives[n] = sg.compile(EXPR, backend=backend, n=n, seed=seed)
        f = objectives[n]
        if backend == "autograd":
            from autograd import value_and_grad

            return value_and_grad(lambda p: f(mu=p[0], sigma=p[1]))(np.array([12.0, 42.0]))
        import torch

        mu = torch.tensor(12.0, dtype=torch.float64, requires_grad=True)
        sigma = torch.tensor(42.0, dtype=torch.float64, requires_grad=True)
        loss = f(mu=mu, sigma=sigma)
        return loss.item(), *torch.autograd.grad(loss, [mu, sigma])

    return run


def timed(fn: Callable[[int, int], object], n: int, seed: int) -> float:
    t0 = time.perf_counter()
    fn(n, seed)
    return time.perf_counter() - t0


def compare(label: str, ours: Callable, theirs: Callable, n: int, rounds: int) -> tuple[float, float, float]:
    for seed in range(3):  # warm up both (imports, allocator, plan cache)
        ours(n, seed), theirs(n, seed)
    ratios, t_ours, t_theirs = [], [], []
    for r in range(rounds):
        if r % 2:  # alternate which runs first
            b = timed(theirs, n, r)
            a = timed(ours, n, r)
        else:
            a = timed(ours, n, r)
            b = timed(theirs, n, r)
        t_ours.append(a)
        t_theirs.append(b)
        ratios.append(a / b)
    return statistics.median(t_ours), statistics.median(t_theirs), statistics.median(ratios)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000, 1_000_000])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = ap.parse_args()
    import os

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load {os.getloadavg()[0]:.2f}")

    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, numpy {np.__version__}")
    print(f"{'comparison':<48}{'n':>9}{'stochgrad':>12}{'hand':>12}{'ratio':>8}")
    pairs = [
        ("torch vs hand-written torch", stochgrad_fn("torch"), hand_torch),
        ("torch vs hand-written torch, numpy noise", stochgrad_fn("torch"), hand_torch_numpy_noise),
        ("torch vs hand-written torch + stderr", stochgrad_fn("torch"), hand_torch_with_stderr),
        ("torch vs hand-written, the same work", stochgrad_fn("torch"), hand_torch_same_work),
        ("autograd vs hand-written autograd", stochgrad_fn("autograd"), hand_autograd),
        ("compile (torch) vs hand-written torch", compiled_fn("torch"), hand_torch),
        ("compile (torch) vs hand-written, numpy noise", compiled_fn("torch"), hand_torch_numpy_noise),
        ("compile (autograd) vs hand-written autograd", compiled_fn("autograd"), hand_autograd),
    ]
    for n in args.sizes:
        rounds = args.rounds if n < 1_000_000 else max(5, args.rounds // 3)
        for label, ours, theirs in pairs:
            a, b, ratio = compare(label, ours, theirs, n, rounds)
            print(f"{label:<48}{n:>9}{a * 1e3:>10.3f}ms{b * 1e3:>10.3f}ms{ratio:>8.2f}")


if __name__ == "__main__":
    main()
