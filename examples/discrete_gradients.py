"""The reference text's discrete experiments: d/dp E[y**2], y ~ Bernoulli(p), at p = 0.25.

By hand E[y**2] = p, so the gradient is 1 for every p.  The reference tries, one at a time:
naive sampling (0), the straight-through estimator (biased: 2p, its 0.54), Gumbel-softmax at
temperature 0.1 (its 0.94) and the score function.  stochgrad runs each as a one-word override,
and its default plan sums the two outcomes exactly.

    python examples/discrete_gradients.py [--backend torch] [-n 100000]
"""

import argparse

import stochgrad as sg

EXPR = "E[y**2, y ~ Bernoulli(p)]"
P = 0.25


def naive_torch(n: int, seed: int) -> float:
    """The reference's first attempt, vectorized: torch.bernoulli has no gradient path to p."""
    import torch

    torch.manual_seed(seed)
    p = torch.tensor(P, dtype=torch.float64, requires_grad=True)
    y = torch.bernoulli(p.expand(n))
    loss = (y**2).mean()
    return float(torch.autograd.grad(loss, p, allow_unused=True)[0] or 0.0) if loss.requires_grad else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default=None)
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    print(f"{EXPR} at p = {P}, n = {args.n}; exact gradient 1\n")
    print(f"{'estimator':<44}{'d/dp':>20}  bias")
    try:
        print(f"{'naive sampling (torch.bernoulli)':<44}{naive_torch(args.n, args.seed):>20.4f}  -")
    except ImportError:
        print(f"{'naive sampling (needs torch)':<44}{'-':>20}")
    rows = [
        ("default plan", None),
        ("score function, leave-one-out baseline", "score"),
        ("score function, no baseline", "score:baseline=none"),
        ("straight-through (expect 2p = 0.5)", "straight_through"),
        ("Gumbel-softmax, temperature 0.1", "relaxed:temperature=0.1"),
        ("Gumbel-softmax, temperature 1", "relaxed:temperature=1"),
        ("straight-through Gumbel, temperature 1", "straight_through_gumbel"),
    ]
    for label, estimator in rows:
        r = sg.estimate(EXPR, {"p": P}, n=args.n, backend=args.backend, seed=args.seed,
                        estimators={"y": estimator} if estimator else None)
        node = r.plan.node("y")
        cell = f"{r.grad['p']:.4f} \u00b1 {r.stderr['p']:.4f}"
        print(f"{label:<44}{cell:>20}  {'biased' if node.biased else 'unbiased'} ({node.spec.describe()})")


if __name__ == "__main__":
    main()
