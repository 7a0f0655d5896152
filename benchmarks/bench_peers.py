"""Time per gradient and gradient variance against Pyro and Storchastic (float64, CPU).

Benchmark-only dependencies: ``pip install -e ".[bench]"`` (pyro-ppl, storchastic, entmax).
Two problems, n samples ("particles") each, every contestant vectorized over samples:

* pathwise: d/d(mu, sigma) E[z**2], z ~ Normal(mu=12, sigma=42) (exact 24, 84).  stochgrad plans
  pathwise; Pyro ``Trace_ELBO``; Storchastic ``Reparameterization(n_samples=n)``.
* score: d/dl E[(b - 0.45)**2], b ~ Bernoulli(logits=l), l = 0.3 (exact 0.1 s (1 - s) = 0.024446,
  s = sigmoid(l)).  stochgrad forced to ``score`` (leave-one-out baseline); Storchastic
  ``ScoreFunction(baseline_factory="batch_average")`` (the same leave-one-out baseline); Pyro
  ``TraceGraph_ELBO`` with ``use_decaying_avg_baseline`` (Pyro has no leave-one-out baseline; its
  average is kept per particle slot across calls and is warmed up before anything is measured).
  stochgrad's default plan here is exact enumeration, ``sg default`` in the variance table.

Pyro's ELBO also carries log p - log q; the model samples each site from the guide's own
distribution, so that term is zero per particle and Pyro's loss is exactly the expectation.
Pathwise: the prior takes mu, sigma themselves, so log p - log q is zero as a function of (mu,
sigma, noise) and adds no gradient (a masked prior would add only the entropy gradient, -1/sigma,
deterministic: no variance).  Score: the prior's logits are detached, so the term changes neither
the REINFORCE cost nor the gradient (with l in the prior Pyro would also differentiate log p_l(b),
mean zero, ~2.4e-4 extra variance at n = 1e3; a masked prior adds a score estimate of the entropy).

Timing: ``sg.compile`` plus one backward, a hand-written torch version, Pyro and Storchastic
(forward plus ``storch.backward()``), interleaved; the median of 3 interleaved per-round medians.
Variance: ``--reps`` independent gradients each at n = 1e3 (torch seed i before call i; stochgrad
objectives advance their own seed per call); ``exact`` holds the exact gradient and, on variance
rows, the exact variance of the estimator (score: with the exact mean as baseline).
Storchastic 0.3.7 runs unpatched with torch 2.13 (no monkeypatch needed).

torch runs on ``--threads`` threads, 1 by default: on a 2-vCPU machine, whenever another process
holds the second vCPU, every OpenMP-parallel kernel waits for it (the ``log_sigmoid`` in
``Bernoulli(logits=...).log_prob``, which Pyro and Storchastic call, took ~8 ms for 1000 elements
instead of 0.02 ms), and the table would measure the neighbour, not the libraries.

    python benchmarks/bench_peers.py [--sizes 1000 100000] [--rounds 10] [--reps 200] [--threads 1]
    python benchmarks/bench_peers.py --quick          # n = 1e3 only, 3 rounds, 50 reps: seconds
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from importlib.metadata import version

import pyro
import pyro.distributions as pdist
import storch
import torch
from storch.method import Reparameterization, ScoreFunction
from torch.distributions import Bernoulli, Normal

import stochgrad as sg

torch.set_default_dtype(torch.float64)

Step = Callable[[], tuple[torch.Tensor, ...]]
NORMAL = "E[z**2, z ~ Normal(mu, sigma)]"
BERNOULLI = "E[(b - 0.45)**2, b ~ Bernoulli(logits=l)]"


def normal_params() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(12.0, requires_grad=True), torch.tensor(42.0, requires_grad=True)


def logit_param() -> torch.Tensor:
    return torch.tensor(0.3, requires_grad=True)


def grads(*leaves: torch.Tensor) -> tuple[torch.Tensor, ...]:
    out = tuple(t.grad for t in leaves)  # what the library's own backward pass left
    assert all(g is not None for g in out)
    return out  # type: ignore[return-value]


def pyro_pathwise(n: int) -> Step:
    def model(mu: torch.Tensor, sigma: torch.Tensor) -> None:
        z = pyro.sample("z", pdist.Normal(mu, sigma))  # prior == guide: log p - log q == 0
        pyro.factor("f", -(z**2))

    def guide(mu: torch.Tensor, sigma: torch.Tensor) -> None:
        pyro.sample("z", pdist.Normal(mu, sigma))

    elbo = pyro.infer.Trace_ELBO(num_particles=n, vectorize_particles=True, max_plate_nesting=1)

    def step() -> tuple[torch.Tensor, ...]:
        mu, sigma = normal_params()
        loss = elbo.differentiable_loss(model, guide, mu, sigma)
        return torch.autograd.grad(loss, [mu, sigma])

    return step


def pyro_score(n: int) -> Step:
    def model(l: torch.Tensor) -> None:
        b = pyro.sample("b", pdist.Bernoulli(logits=l.detach()))  # log p - log q == 0, no grad path
        pyro.factor("f", -((b - 0.45) ** 2))

    def guide(l: torch.Tensor) -> None:
        pyro.sample("b", pdist.Bernoulli(logits=l), infer={"baseline": {"use_decaying_avg_baseline": True}})

    elbo = pyro.infer.TraceGraph_ELBO(num_particles=n, vectorize_particles=True, max_plate_nesting=1)
    pyro.clear_param_store()  # the decaying-average baseline is a param of shape (n,)

    def step() -> tuple[torch.Tensor, ...]:
        l = logit_param()
        elbo.loss_and_grads(model, guide, l)  # back-propagates its surrogate itself
        return grads(l)

    for _ in range(50):  # warm the decaying average up
        step()
    return step


def storch_pathwise(n: int) -> Step:
    method = Reparameterization("z", n_samples=n)

    def step() -> tuple[torch.Tensor, ...]:
        mu, sigma = normal_params()
        z = method(Normal(mu, sigma))
        storch.add_cost(z * z, "f")
        storch.backward()
        return grads(mu, sigma)

    return step


def storch_score(n: int) -> Step:
    method = ScoreFunction("b", n_samples=n, baseline_factory="batch_average")

    def step() -> tuple[torch.Tensor, ...]:
        l = logit_param()
        b = method(Bernoulli(logits=l))
        storch.add_cost((b - 0.45) ** 2, "f")
        storch.backward()
        return grads(l)

    return step


def stochgrad_step(text: str, est: dict[str, str], n: int, normal: bool) -> Step:
    f = sg.compile(text, backend="torch", n=n, estimators=est, seed=0)

    def step() -> tuple[torch.Tensor, ...]:
        p = dict(zip(("mu", "sigma"), normal_params())) if normal else {"l": logit_param()}
        return torch.autograd.grad(f(**p), list(p.values()))

    return step


def hand_pathwise(n: int) -> Step:
    def step() -> tuple[torch.Tensor, ...]:
        mu, sigma = normal_params()
        z = mu + sigma * torch.randn(n)
        return torch.autograd.grad((z * z).mean(), [mu, sigma])

    return step


def hand_score(n: int) -> Step:
    def step() -> tuple[torch.Tensor, ...]:
        l = logit_param()
        b = (torch.rand(n) < torch.sigmoid(l)).double()
        f = (b - 0.45) ** 2
        logq = b * l - torch.nn.functional.softplus(l)
        base = (f.sum() - f) / (n - 1)
        return torch.autograd.grad(((f - base).detach() * logq).mean(), [l])

    return step


def contestants(problem: str, n: int, default_plan: bool = False) -> dict[str, Step]:
    normal = problem == "pathwise"
    if normal:
        out = {"hand": hand_pathwise(n), "stochgrad": stochgrad_step(NORMAL, {}, n, True),
               "pyro": pyro_pathwise(n), "storch": storch_pathwise(n)}
    else:
        out = {"hand": hand_score(n), "stochgrad": stochgrad_step(BERNOULLI, {"b": "score"}, n, False),
               "pyro": pyro_score(n), "storch": storch_score(n)}
    if default_plan:  # Normal: pathwise again; Bernoulli: exact enumeration
        out["sg default"] = stochgrad_step(NORMAL if normal else BERNOULLI, {}, n, normal)
    return out


def median_time(fn: Step, rounds: int) -> float:
    fn()
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out) * 1e3


def timing(sizes: list[int], rounds: int) -> None:
    print(f"\nmedian ms per gradient ({rounds} calls per round, 3 interleaved rounds)")
    print(f"{'problem':<10}{'n':>8}{'hand':>9}{'stochgrad':>11}{'pyro':>9}{'storch':>9}"
          f"{'sg/hand':>9}{'pyro/hand':>11}{'storch/hand':>13}")
    for n in sizes:
        for problem in ("pathwise", "score"):
            steps = contestants(problem, n)
            times: dict[str, list[float]] = {k: [] for k in steps}
            for _ in range(3):  # interleave
                for k, fn in steps.items():
                    times[k].append(median_time(fn, rounds))
            t = {k: statistics.median(v) for k, v in times.items()}
            h = t["hand"]
            print(f"{problem:<10}{n:>8}{h:>9.2f}{t['stochgrad']:>11.2f}{t['pyro']:>9.2f}{t['storch']:>9.2f}"
                  f"{t['stochgrad'] / h:>8.2f}x{t['pyro'] / h:>10.2f}x{t['storch'] / h:>12.2f}x")


def variance(n: int, reps: int) -> None:
    q = torch.sigmoid(torch.tensor(0.3)).item()
    # exact gradient; exact variance of the pathwise estimator, and of the score estimator with the
    # exact mean as baseline (leave-one-out differs from it by O(1/n) relative)
    exact = {"mu": (24.0, 4 * 42.0**2 / n), "sigma": (84.0, 4 * (12.0**2 + 2 * 42.0**2) / n),
             "l": (0.1 * q * (1 - q), 0.01 * q * (1 - q) * (1 - 2 * q) ** 2 / n)}
    names = ("hand", "stochgrad", "sg default", "pyro", "storch")
    print(f"\ngradient over {reps} independent calls at n = {n}: mean, then variance "
          f"(relative s.e. of a variance ~ {(2 / (reps - 1)) ** 0.5:.0%} if Gaussian, more if heavy-tailed)")
    print(f"{'param':<7}{'exact':>10}{'stat':>6}" + "".join(f"{k:>12}" for k in names))
    for problem, params in (("pathwise", ("mu", "sigma")), ("score", ("l",))):
        steps = contestants(problem, n, default_plan=True)
        draws: dict[str, torch.Tensor] = {}
        for k, fn in steps.items():
            rows = []
            for i in range(reps):
                torch.manual_seed(i)
                rows.append(torch.stack([g.detach() for g in fn()]))
            draws[k] = torch.stack(rows)  # (reps, n_params)
        for j, p in enumerate(params):
            for stat in ("mean", "var"):
                vals = [draws[k][:, j].mean() if stat == "mean" else draws[k][:, j].var() for k in names]
                cells = "".join(f"{v.item():>12.4g}" for v in vals)
                print(f"{p:<7}{exact[p][stat == 'var']:>10.4g}{stat:>6}{cells}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--reps", type=int, default=200, help="independent gradients for the variance table")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (see the docstring)")
    ap.add_argument("--quick", action="store_true", help="--sizes 1000 --rounds 3 --reps 50")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.sizes, args.rounds, args.reps = [1_000], 3, 50
    print(f"pyro {pyro.__version__}, storchastic {version('storchastic')}, torch {torch.__version__}, "
          f"float64, {torch.get_num_threads()} thread(s)")
    timing(args.sizes, args.rounds)
    variance(1_000, args.reps)


if __name__ == "__main__":
    main()
