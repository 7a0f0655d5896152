"""One training step of the digits VAE (``examples/vae_digits.py``) through stochgrad against hand-written torch.

The model: an MLP encoder 64-256-16 giving ``mu`` and ``sigma`` of 8 latents, an MLP decoder 8-256-64 with
Bernoulli pixels, float32, batch 64, one sample of ``z`` per example (n = 1).  A step is the forward pass, the
reverse pass and an Adam update.  stochgrad's objective is the example's one expression,

    E[loglik(x, z), z ~ Normal(mu, sigma)] - sum(KL(Normal(mu, sigma) || Normal(0, 1)), axis=-1)

compiled once (``sg.compile(..., n=1, backend_options={"dtype": "float32"})``); the hand-written step draws ``eps`` with
``torch.randn``, forms ``z = mu + sigma * eps`` and the closed-form KL ``0.5 * (mu^2 + sigma^2 - 1) -
log sigma`` (Kingma & Welling 2014, appendix B): the same work.  Two models start from the same weights;
rounds are interleaved in one process and the figure is the median over rounds of the per-round ratio
(each round times ``--steps`` steps of each).

    python benchmarks/bench_vae_step.py [--rounds 15] [--steps 50] [--threads 1] [--batch 64] [--no-validate]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import stochgrad as sg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from vae_digits import ELBO, VAE  # the example's model and objective, the ones measured

VALIDATE = [True]


def data(batch: int) -> torch.Tensor:
    from sklearn.datasets import load_digits

    x = (load_digits().data >= 8).astype(np.float32)
    return torch.from_numpy(x[:batch])


def stochgrad_step(model: VAE, x: torch.Tensor) -> object:
    elbo = sg.parse(ELBO, functions={"loglik": sg.UserFunction(model.loglik, name="loglik")})
    objective = sg.compile(elbo, backend="torch", n=1, seed=0, backend_options={"dtype": "float32"},
                           validate=VALIDATE[0])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        mu, sigma = model.encode(x)
        loss = -objective(x=x, mu=mu, sigma=sigma)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def hand_step(model: VAE, x: torch.Tensor) -> object:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)

    def step() -> None:
        mu, sigma = model.encode(x)
        z = mu + sigma * torch.randn(mu.shape, generator=g)
        kl = (0.5 * (mu * mu + sigma * sigma - 1.0) - torch.log(sigma)).sum(-1)
        loss = -(model.loglik(x, z[None])[0] - kl).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--no-validate", action="store_true", help="compile with validate=False (no parameter checks)")
    args = ap.parse_args()
    VALIDATE[0] = not args.no_validate
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = data(args.batch)
    base = VAE()
    ours, theirs = stochgrad_step(copy.deepcopy(base), x), hand_step(copy.deepcopy(base), x)
    for _ in range(20):  # warm up both (allocator, plan, first-call checks)
        ours(), theirs()  # type: ignore[operator]
    ratios, t_ours, t_theirs = [], [], []
    for r in range(args.rounds):
        times = {}
        for name, fn in ((("ours", ours), ("theirs", theirs)) if r % 2 == 0 else (("theirs", theirs), ("ours", ours))):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                fn()  # type: ignore[operator]
            times[name] = (time.perf_counter() - t0) / args.steps
        t_ours.append(times["ours"])
        t_theirs.append(times["theirs"])
        ratios.append(times["ours"] / times["theirs"])
    print(f"load {os.getloadavg()[0]:.2f}, torch {torch.__version__}, threads={torch.get_num_threads()}, batch {args.batch},"
          f" validate={VALIDATE[0]}")
    print(f"VAE step: stochgrad {statistics.median(t_ours) * 1e3:.3f} ms, hand-written {statistics.median(t_theirs) * 1e3:.3f} ms,"
          f" ratio {statistics.median(ratios):.3f} (range {min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
