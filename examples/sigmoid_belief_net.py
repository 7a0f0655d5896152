"""A sigmoid belief net (Neal 1992; Mnih & Gregor 2014, "Neural variational inference and learning
in belief networks") on scikit-learn's binarized 8x8 digits, in pure DSL (no user function).

Model: H = 5 binary latents, ``p(h) = prod_k Bernoulli(h_k; sigmoid(c_k))``, and 64 pixels
``p(x | h) = prod_j Bernoulli(x_j; sigmoid((h W + b)_j))``.  Encoder ``q(h | x) = Bernoulli(logits =
x V + d)``.  Because the logits are DSL text (``h @ W + b``), the planner sees inside them.

Part 1 (one image x): the latent has 2^5 = 32 joint states, so the planner *enumerates* both

    LOGLIK = log(E[exp(sum(log_prob(Bernoulli(logits=h @ W + b), x))), h ~ Bernoulli(logits=c)])
           = log sum_h p(h) p(x | h)                                   (the exact log-likelihood)
    ELBO1  = E[log p(x|h) + log p(h) - log q(h|x), h ~ q(h|x)] = sum_h q(h|x) [...]

exactly (zero variance); tests/test_example_sigmoid_belief_net.py checks value and gradients
against a numpy sum over the 32 states.

Part 2 (minibatches of B = 32): h has shape (B, 5), 32^B joint states, so the planner cannot
enumerate; it plans the score-function estimator with a leave-one-out baseline (n samples of h per
example).  The per-example ELBO is the (B,)-vector

    ELBO = E[sum(log_prob(Bernoulli(logits=h @ W + b), x), axis=-1)
             + sum(log_prob(Bernoulli(logits=c), h), axis=-1)
             - sum(log_prob(Bernoulli(logits=x @ V + d), h), axis=-1), h ~ Bernoulli(logits=x @ V + d)]

trained with ``torch.optim.Adam`` through ``sg.compile``.  The example prints the plan with the
planner's own plate inference on the summed form (it sees through ``log_prob`` and ``@`` that each
image's terms depend on its own row of h: "plate over 32 examples (inferred ...)", each image's score
paired with its own ELBO) and the plan it trains with (the per-image form, ``batch_axes=1`` declared:
the same estimator).  At the end the exact log-likelihood of test images is
LOGLIK with x a (T, 64) batch (``sum(..., axis=-1)``; the 32 states of h are still enumerated),
averaged, next to the exact ELBO of the same images (Part 1's ELBO, one image at a time).

Data: ``sklearn.datasets.load_digits``, pixels binarized at >= 8, a seed-0 split of 1497 / 300.

    python examples/sigmoid_belief_net.py [--steps 300] [--batch 32] [--n 8] [--lr 0.01]
"""

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import stochgrad as sg

H, D = 5, 64
LOGLIK = "log(E[exp(sum(log_prob(Bernoulli(logits=h @ W + b), x))), h ~ Bernoulli(logits=c)])"
LOGLIK_BATCH = "log(E[exp(sum(log_prob(Bernoulli(logits=h @ W + b), x), axis=-1)), h ~ Bernoulli(logits=c)])"
ELBO1 = ("E[sum(log_prob(Bernoulli(logits=h @ W + b), x)) + sum(log_prob(Bernoulli(logits=c), h))"
         " - sum(log_prob(Bernoulli(logits=x @ V + d), h)), h ~ Bernoulli(logits=x @ V + d)]")
TERMS = ("sum(log_prob(Bernoulli(logits=h @ W + b), x), axis=-1) + sum(log_prob(Bernoulli(logits=c), h), axis=-1)"
         " - sum(log_prob(Bernoulli(logits=x @ V + d), h), axis=-1)")
ELBO = f"E[{TERMS}, h ~ Bernoulli(logits=x @ V + d)]"          # one value per example, (B,)
ELBO_SUMMED = f"E[sum({TERMS}), h ~ Bernoulli(logits=x @ V + d)]"  # the form plate inference should see
NAMES = ("W", "b", "c", "V", "d")


def load(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = (load_digits().data >= 8).astype(np.float64)
    train, test = train_test_split(x, test_size=300, random_state=seed)
    return train, test


def init(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"W": 0.1 * rng.standard_normal((H, D)), "b": np.zeros(D), "c": np.zeros(H),
            "V": 0.01 * rng.standard_normal((D, H)), "d": np.zeros(H)}


def shapes(batch: int) -> dict[str, tuple[int, ...]]:
    return {"x": (batch, D), "W": (H, D), "b": (D,), "c": (H,), "V": (D, H), "d": (H,)}


def exact_loglik(theta: dict[str, np.ndarray], x: np.ndarray, backend: str = "torch") -> np.ndarray:
    """log p(x_t) for each row of x (T, 64), the 32 states of h enumerated (exact, so any n >= 2)."""
    p = {k: theta[k] for k in ("W", "b", "c")}
    return np.asarray(sg.estimate(LOGLIK_BATCH, {**p, "x": x}, n=2, backend=backend, seed=0, wrt=()).value)


def exact_elbo(theta: dict[str, np.ndarray], x: np.ndarray) -> float:
    """The mean ELBO of the rows of x, each enumerated over its 32 states (one image at a time)."""
    return float(np.mean([sg.estimate(ELBO1, {**theta, "x": xi}, n=2, backend="torch", seed=0, wrt=()).value
                          for xi in x]))


def train(steps: int = 300, batch: int = 32, n: int = 8, lr: float = 0.01, seed: int = 0,
          report: int = 50, verbose: bool = True) -> tuple[dict[str, np.ndarray], list[float]]:
    """Adam on the per-example score-function ELBO; returns the parameters and the running
    mean of the minibatch ELBO (nats per image) at every report."""
    train_x, _ = load()
    params = {k: torch.tensor(v, requires_grad=True) for k, v in init(seed).items()}
    objective = sg.compile(ELBO, n=n, backend="torch", seed=seed, batch_axes=1)
    if verbose:
        print("planner's own plan for the summed ELBO: "
              + str(sg.plan(ELBO_SUMMED, shapes(batch), backend="torch")))
        print("trained with:                           "
              + str(sg.plan(ELBO, shapes(batch), backend="torch", batch_axes=1)))
    opt = torch.optim.Adam(params.values(), lr=lr)
    gen = np.random.default_rng(seed)
    history, running, start = [], [], time.perf_counter()
    for step in range(1, steps + 1):
        xb = torch.from_numpy(train_x[gen.choice(train_x.shape[0], batch, replace=False)])
        elbo = objective(x=xb, **params) / batch
        opt.zero_grad()
        (-elbo).backward()
        opt.step()
        running.append(elbo.item())
        if step % report == 0:
            history.append(float(np.mean(running)))
            running = []
            if verbose:
                print(f"step {step:4d}  minibatch ELBO {history[-1]:8.3f} nats/image"
                      f"  ({time.perf_counter() - start:.1f}s)", flush=True)
    return {k: v.detach().numpy() for k, v in params.items()}, history


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--n", type=int, default=8, help="samples of h per example (leave-one-out needs 2+)")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--test", type=int, default=300, help="test images for the exact log-likelihood")
    ap.add_argument("--report", type=int, default=50, help="print the ELBO every this many steps")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    _, test = load()
    theta0 = init(args.seed)
    one = {**theta0, "x": test[0]}
    print("Part 1, one image:")
    print("  log p(x):", sg.plan(LOGLIK, {k: one[k] for k in ("W", "b", "c", "x")}, backend="torch"))
    print("  ELBO:    ", sg.plan(ELBO1, one, backend="torch"))
    print("Part 2, minibatches:")
    theta, _ = train(args.steps, args.batch, args.n, args.lr, args.seed, args.report)
    x = test[: args.test]
    before, after = exact_loglik(theta0, x).mean(), exact_loglik(theta, x).mean()
    print(f"exact log p(x) on {len(x)} test images (32 states enumerated): {before:.3f} at the start,"
          f" {after:.3f} after training; exact ELBO of the same images {exact_elbo(theta, x):.3f} nats/image")


if __name__ == "__main__":
    main()
