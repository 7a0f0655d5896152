"""Optimizing the REBAR/RELAX toy problem (Tucker et al. 2017; Grathwohl et al. 2018).

Minimize E[(b - t)**2] over p, b ~ Bernoulli(p), with t = 0.499.  The gradient is 1 - 2t = 0.002:
tiny next to the noise of a plain score-function estimate, so single-sample REINFORCE wanders,
while the default plan (exact enumeration of b) walks p to 0.  p = sigmoid(theta); Adam on theta,
learning rate 0.01, 2000 steps, one sample per step.

    python examples/relax_toy.py [--backend torch] [--steps 2000] [--seeds 3]
"""

import argparse

import numpy as np

import stochgrad as sg

EXPR = "E[(b - t)**2, b ~ Bernoulli(logits=theta)]"


def adam(grad_fn, theta: float, steps: int, lr: float = 0.01) -> float:
    m = v = 0.0
    for k in range(1, steps + 1):
        g = grad_fn(theta, k)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        theta -= lr * (m / (1 - 0.9**k)) / (np.sqrt(v / (1 - 0.999**k)) + 1e-8)
    return theta


def train(estimators, t: float, steps: int, seed: int, backend) -> float:
    def grad(theta: float, k: int) -> float:
        r = sg.estimate(EXPR, {"theta": theta, "t": t}, n=1, backend=backend, seed=seed * 100_000 + k,
                        estimators=estimators)
        return r.grad["theta"]

    theta = adam(grad, 0.0, steps)
    return float(1 / (1 + np.exp(-theta)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default=None)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("-t", type=float, default=0.499)
    args = ap.parse_args()

    print(f"minimize {EXPR} over theta, t = {args.t}; the optimum is p = sigmoid(theta) = 0\n")
    for label, estimators in [("default plan", None), ("plain score function", {"b": "score:baseline=none"})]:
        print(f"{label}: {sg.plan(EXPR, estimators).node('b')}")
        finals = [train(estimators, args.t, args.steps, s, args.backend) for s in range(args.seeds)]
        reached = sum(p < 0.05 for p in finals)
        print(f"  final p over {args.seeds} seeds: {', '.join(f'{p:.4f}' for p in finals)}"
              f"  -> p < 0.05 in {reached}/{args.seeds}\n")


if __name__ == "__main__":
    main()
