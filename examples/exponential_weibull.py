"""The reference text's other reparameterizations: Exponential and Weibull.

    Exponential(rate):   z = -log(u) / rate,                u ~ U(0, 1)
    Weibull(lam, k):     z = lam * (-log u) ** (1 / k),     u ~ U(0, 1)

Closed forms by hand: for the Exponential, E[z] = 1/rate and E[z^2] = 2/rate^2; for the Weibull,
E[z^m] = lam^m * Gamma(1 + m/k), differentiated below with the digamma function.

    python examples/exponential_weibull.py [--backend torch] [-n 200000]
"""

import argparse
import math

from scipy.special import digamma

import stochgrad as sg


def weibull_moment_grads(lam: float, k: float, m: int) -> tuple[float, float, float]:
    g = math.gamma(1 + m / k)
    value = lam**m * g
    return value, m * lam ** (m - 1) * g, value * digamma(1 + m / k) * (-m / k**2)


def row(label: str, r: sg.Estimate, exact: dict[str, float]) -> None:
    cells = "  ".join(f"d/d{k} = {r.grad[k]:9.5f} \u00b1 {r.stderr[k]:.5f} (exact {exact[k]:9.5f})" for k in exact)
    print(f"{label:<36}{cells}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default=None)
    ap.add_argument("-n", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    opts = dict(n=args.n, backend=args.backend, seed=args.seed)

    rate = 2.0
    r = sg.estimate("E[z, z ~ Exponential(rate)]", {"rate": rate}, **opts)
    row("E[z], z ~ Exponential(2)", r, {"rate": -1 / rate**2})
    r = sg.estimate("E[z**2, z ~ Exponential(rate)]", {"rate": rate}, **opts)
    row("E[z**2], z ~ Exponential(2)", r, {"rate": -4 / rate**3})

    lam, k = 1.5, 2.5
    for m in (1, 2):
        _, d_lam, d_k = weibull_moment_grads(lam, k, m)
        text = f"E[z**{m}, z ~ Weibull(lam, k)]" if m > 1 else "E[z, z ~ Weibull(lam, k)]"
        r = sg.estimate(text, {"lam": lam, "k": k}, **opts)
        row(f"E[z{'**2' if m > 1 else ''}], z ~ Weibull(1.5, 2.5)", r, {"lam": d_lam, "k": d_k})
    print("\nplan:", sg.plan("E[z, z ~ Weibull(lam, k)]"))


if __name__ == "__main__":
    main()
