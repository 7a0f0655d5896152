"""The reference text's Normal experiment: d/dmu and d/dsigma of E[z**2], z ~ N(mu, sigma^2).

By hand: E[z^2] = mu^2 + sigma^2, so the gradients are 2 mu = 24 and 2 sigma = 84 at mu = 12,
sigma = 42.  Naive sampling (torch.normal, as in the reference) back-propagates 0; the
reparameterization z = mu + sigma * eps gives the right answer; so does the score function,
with a larger standard error.

    python examples/normal_reparameterization.py [--backend torch] [-n 100000]
"""

import argparse

import stochgrad as sg

EXPR = "E[z**2, z ~ Normal(mu, sigma)]"
MU, SIGMA = 12.0, 42.0


def naive_torch(n: int, seed: int) -> tuple[float, float]:
    """The reference's first attempt, vectorized: torch.normal has no gradient path to mu, sigma."""
    import torch

    torch.manual_seed(seed)
    mu = torch.tensor(MU, dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor(SIGMA, dtype=torch.float64, requires_grad=True)
    z = torch.normal(mu.expand(n), sigma.expand(n))
    (z**2).mean().backward()
    return float(mu.grad), float(sigma.grad)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default=None)
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    print(f"{EXPR} at mu={MU:g}, sigma={SIGMA:g}, n={args.n}; exact gradients: d/dmu = 24, d/dsigma = 84\n")
    print(f"{'method':<34}{'d/dmu':>20}{'d/dsigma':>20}")
    try:
        gm, gs = naive_torch(args.n, args.seed)
        print(f"{'naive sampling (torch.normal)':<34}{gm:>20.2f}{gs:>20.2f}")
    except ImportError:
        print(f"{'naive sampling (needs torch)':<34}{'-':>20}{'-':>20}")
    for label, estimator in [("stochgrad, planned (pathwise)", None), ("stochgrad, score function + LOO", "score")]:
        r = sg.estimate(EXPR, {"mu": MU, "sigma": SIGMA}, n=args.n, backend=args.backend, seed=args.seed,
                        estimators={"z": estimator} if estimator else None)
        mu_s = f"{r.grad['mu']:.2f} \u00b1 {r.stderr['mu']:.2f}"
        sig_s = f"{r.grad['sigma']:.2f} \u00b1 {r.stderr['sigma']:.2f}"
        print(f"{label:<34}{mu_s:>20}{sig_s:>20}")
    print("\nplan:", sg.plan(EXPR))


if __name__ == "__main__":
    main()
