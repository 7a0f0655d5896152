"""Overhead of stochgrad against hand-written torch for discrete estimators (float64, CPU).

Problems: the RELAX toy ``E[(b - 0.45)**2, b ~ Bernoulli(logits=l)]`` with the score function, with
and without a leave-one-out baseline, and a 10-category Gumbel-softmax cost
``E[sum(w * y), y ~ Categorical(logits=l)]`` at temperature 0.5.  Each is timed as ``sg.compile``
(a native objective plus one backward pass: the same work as the hand-written code) and as
``sg.estimate`` (which also computes standard errors), and ``estimate`` against "the same work": the
leanest hand-written torch that also returns every sample's gradient and the standard errors (numpy
noise, per-sample leaves, one reverse pass).  Interleaved rounds, median of ratios.

    python benchmarks/bench_discrete_overhead.py [--rounds 20] [--sizes 1000 100000 1000000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

import stochgrad as sg
from stochgrad.noise import NumpyStream

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_overhead import compare  # noqa: E402  (the same interleaved median-of-ratios timer)

F64 = torch.float64
W = torch.arange(10, dtype=F64)


def hand_score(n: int, seed: int, loo: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    l = torch.tensor(0.3, dtype=F64, requires_grad=True)
    b = (torch.rand(n, generator=g, dtype=F64) < torch.sigmoid(l)).to(F64)
    f = (b - 0.45) ** 2
    logq = b * l - torch.nn.functional.softplus(l)
    base = (f.sum() - f) / (n - 1) if loo else 0.0
    return torch.autograd.grad(((f - base).detach() * logq).mean(), l)[0]


def hand_gumbel(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    l = torch.zeros(10, dtype=F64, requires_grad=True)
    u = torch.rand(n, 10, generator=g, dtype=F64).clamp_(1e-16, 1 - 1e-16)
    y = torch.softmax((torch.log_softmax(l, -1) - torch.log(-torch.log(u))) / 0.5, dim=-1)
    return torch.autograd.grad((y @ W).mean(), l)[0]


def _mean_stderr(rows: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error of each row of per-sample values (rows x samples), from one-pass sums."""
    r = rows.detach().numpy()
    n = r.shape[1]
    s1, s2 = r.sum(axis=1), np.einsum("ij,ij->i", r, r)
    mean = s1 / n
    return mean, np.sqrt(np.maximum(s2 - s1 * mean, 0.0) / (n - 1) / n)


def _leaf(value: np.ndarray, n: int) -> torch.Tensor:
    v = torch.as_tensor(value)
    return v.expand((n,) + tuple(v.shape)).requires_grad_(True)


def hand_score_same_work(n: int, seed: int, loo: bool) -> tuple[np.ndarray, np.ndarray]:
    """What ``estimate`` computes for the score problems, as leanly as torch allows: the sample drawn
    from the scalar parameter, log q and the surrogate on per-sample leaves, then the value's and the
    per-sample gradients' means and standard errors."""
    u = np.empty(n)
    NumpyStream(seed).generator().random(out=u)
    b = (torch.from_numpy(u) < torch.sigmoid(torch.tensor(0.3, dtype=F64))).to(F64)
    l = _leaf(np.asarray(0.3), n)
    f = (b - 0.45) ** 2
    logq = b * l - torch.nn.functional.softplus(l)
    base = (f.sum() - f) / (n - 1) if loo else 0.0
    (g,) = torch.autograd.grad(((f - base).detach() * logq).sum() / n, l)
    return _mean_stderr(torch.stack([f, g * n]))


def hand_gumbel_same_work(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The same for the Gumbel-softmax problem, with per-sample gradients for ``l`` and ``w``."""
    u = np.empty((n, 10))
    NumpyStream(seed).generator().random(out=u)
    l, w = _leaf(np.zeros(10), n), _leaf(np.arange(10.0), n)
    y = torch.softmax((l - torch.log(-torch.log(torch.from_numpy(u)))) / 0.5, dim=-1)
    f = (w * y).sum(-1)
    gl, gw = torch.autograd.grad(f.sum() / n, [l, w])
    return _mean_stderr(torch.cat([f[None], gl.T * n, gw.T * n]))


PROBLEMS = {
    "Bernoulli score + LOO": ("E[(b - 0.45)**2, b ~ Bernoulli(logits=l)]", {"b": "score"},
                              lambda: {"l": torch.tensor(0.3, dtype=F64, requires_grad=True)},
                              {"l": 0.3}, lambda n, s: hand_score(n, s, True),
                              lambda n, s: hand_score_same_work(n, s, True)),
    "Bernoulli score, no baseline": ("E[(b - 0.45)**2, b ~ Bernoulli(logits=l)]", {"b": "score:baseline=none"},
                                     lambda: {"l": torch.tensor(0.3, dtype=F64, requires_grad=True)},
                                     {"l": 0.3}, lambda n, s: hand_score(n, s, False),
                                     lambda n, s: hand_score_same_work(n, s, False)),
    "10-category Gumbel-softmax": ("E[sum(w * y), y ~ Categorical(logits=l)]", {"y": "relaxed:temperature=0.5"},
                                   lambda: {"l": torch.zeros(10, dtype=F64, requires_grad=True), "w": W},
                                   {"l": torch.zeros(10).numpy(), "w": W.numpy()}, hand_gumbel, hand_gumbel_same_work),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000, 1_000_000])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import os

    print(f"load {os.getloadavg()[0]:.2f}, torch {torch.__version__}, threads={torch.get_num_threads()}")
    print(f"{'problem':<30}{'n':>9}{'compile':>11}{'estimate':>11}{'hand':>11}{'same work':>11}{'compile/hand':>14}"
          f"{'estimate/hand':>15}{'estimate/same':>15}")
    for name, (text, est, native, numeric, hand, same_work) in PROBLEMS.items():
        for n in args.sizes:
            f = sg.compile(text, backend="torch", n=n, estimators=est, seed=0)

            def compiled(n: int, seed: int) -> object:
                p = native()
                return torch.autograd.grad(f(**p), p["l"])

            def estimated(n: int, seed: int) -> object:
                return sg.estimate(text, numeric, n=n, backend="torch", estimators=est, seed=seed)

            rounds = args.rounds if n < 1_000_000 else max(5, args.rounds // 3)
            c, h, rc = compare(name, compiled, hand, n, rounds)
            e, _, re_ = compare(name, estimated, hand, n, rounds)
            _, s, rs = compare(name, estimated, same_work, n, rounds)
            print(f"{name:<30}{n:>9}{c * 1e3:>9.3f}ms{e * 1e3:>9.3f}ms{h * 1e3:>9.3f}ms{s * 1e3:>9.3f}ms"
                  f"{rc:>13.2f}x{re_:>14.2f}x{rs:>14.2f}x")


if __name__ == "__main__":
    main()
