"""Time per gradient against Pyro (a benchmark-only dependency: ``pip install pyro-ppl``).

Two problems, n Monte Carlo samples ("particles") each, float64 CPU:

* pathwise: gradient of E[z**2], z ~ Normal(mu, sigma) -- Pyro ``Trace_ELBO`` with the guide
  ``z ~ Normal(mu, sigma)`` and the model contributing ``pyro.factor(z**2)`` (its own sample site
  masked), vectorized particles;
* score function: gradient of E[(b - 0.45)**2], b ~ Bernoulli(sigmoid(l)) -- Pyro
  ``TraceGraph_ELBO`` (score function with its decaying-average baseline), vectorized particles.

Pyro's ELBO also carries the guide's entropy term, so its numbers differ from the plain expectation;
only the time per gradient is compared.  stochgrad runs as ``sg.compile`` plus one backward pass and
as a hand-written torch version of the same estimator, all in one process, interleaved.
Storchastic is not installed here and not measured.

    python benchmarks/bench_peers.py [--sizes 1000 100000] [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import pyro
import pyro.distributions as pdist
import torch

import stochgrad as sg

torch.set_default_dtype(torch.float64)


def pyro_pathwise(n: int):
    def model():
        z = pyro.sample("z", pdist.Normal(0.0, 1.0).mask(False))
        pyro.factor("f", -(z**2))

    def guide(mu, sigma):
        pyro.sample("z", pdist.Normal(mu, sigma))

    elbo = pyro.infer.Trace_ELBO(num_particles=n, vectorize_particles=True, max_plate_nesting=1)

    def step():
        mu = torch.tensor(12.0, requires_grad=True)
        sigma = torch.tensor(42.0, requires_grad=True)
        loss = elbo.differentiable_loss(model, lambda: guide(mu, sigma))
        return torch.autograd.grad(loss, [mu, sigma])

    return step


def pyro_score(n: int):
    def model():
        b = pyro.sample("b", pdist.Bernoulli(0.5).mask(False))
        pyro.factor("f", -((b - 0.45) ** 2))

    def guide(l):
        pyro.sample("b", pdist.Bernoulli(logits=l))

    elbo = pyro.infer.TraceGraph_ELBO(num_particles=n, vectorize_particles=True, max_plate_nesting=1)

    def step():
        l = torch.tensor(0.3, requires_grad=True)
        elbo.loss_and_grads(model, lambda: guide(l))  # TraceGraph_ELBO back-propagates its surrogate itself
        return l.grad

    return step


def stochgrad_step(text: str, est: dict, n: int, params):
    f = sg.compile(text, backend="torch", n=n, estimators=est, seed=0)

    def step():
        p = params()
        return torch.autograd.grad(f(**p), list(p.values()))

    return step


def hand_pathwise(n: int):
    def step():
        mu = torch.tensor(12.0, requires_grad=True)
        sigma = torch.tensor(42.0, requires_grad=True)
        z = mu + sigma * torch.randn(n)
        return torch.autograd.grad((z * z).mean(), [mu, sigma])

    return step


def hand_score(n: int):
    def step():
        l = torch.tensor(0.3, requires_grad=True)
        b = (torch.rand(n) < torch.sigmoid(l)).double()
        f = (b - 0.45) ** 2
        logq = b * l - torch.nn.functional.softplus(l)
        base = (f.sum() - f) / (n - 1)
        return torch.autograd.grad(((f - base).detach() * logq).mean(), [l])

    return step


def median_time(fn, rounds: int) -> float:
    fn()
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000])
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    print(f"pyro {pyro.__version__}, torch {torch.__version__}")
    print(f"{'problem':<24}{'n':>8}{'hand':>10}{'stochgrad':>11}{'pyro':>10}{'sg/hand':>9}{'pyro/hand':>11}")
    for n in args.sizes:
        cases = [
            ("pathwise Normal", hand_pathwise(n),
             stochgrad_step("E[z**2, z ~ Normal(mu, sigma)]", {}, n,
                            lambda: {"mu": torch.tensor(12.0, requires_grad=True),
                                     "sigma": torch.tensor(42.0, requires_grad=True)}),
             pyro_pathwise(n)),
            ("score Bernoulli + LOO", hand_score(n),
             stochgrad_step("E[(b - 0.45)**2, b ~ Bernoulli(logits=l)]", {"b": "score"}, n,
                            lambda: {"l": torch.tensor(0.3, requires_grad=True)}),
             pyro_score(n)),
        ]
        for name, hand, ours, peer in cases:
            times = {"hand": [], "ours": [], "peer": []}
            for _ in range(3):  # interleave
                times["hand"].append(median_time(hand, args.rounds))
                times["ours"].append(median_time(ours, args.rounds))
                times["peer"].append(median_time(peer, args.rounds))
            h, o, p = (statistics.median(times[k]) for k in ("hand", "ours", "peer"))
            print(f"{name:<24}{n:>8}{h:>8.2f}ms{o:>9.2f}ms{p:>8.2f}ms{o / h:>8.2f}x{p / h:>10.2f}x")


if __name__ == "__main__":
    main()
