"""An importance-weighted autoencoder (IWAE; Burda, Grosse & Salakhutdinov 2016) on scikit-learn's 8x8
digits, the encoder, the decoder and the bound written entirely in the stochgrad DSL.

Model: z ~ N(0, I_d), x | z ~ Bernoulli(logits = tanh(z W3 + b3) W4 + b4) over the 64 pixels.
Encoder: q(z | x) = N(mu, diag(sigma^2)) with h = tanh(x W1 + b1), mu = h Wm + bm, sigma = exp(h Ws + bs).
The K-sample bound of one image (Burda et al., eq. 8), with z_1..z_K iid from q(z | x):

    L_K(x) = E[ log (1/K) sum_k p(x, z_k) / q(z_k | x) ]  <=  log p(x),     L_1 = ELBO,  L_K <= L_{K+1}

and the objective of a batch is sum_x L_K(x).  In the DSL (``z ~ iid(K, D)`` puts the K copies on a new
first axis, so the log weights have shape (K, batch) and ``logmeanexp(., axis=0)`` averages the weights):

    E[sum(logmeanexp(LOGW, axis=0)), z ~ iid(K, Normal(MU, SIGMA))]
    LOGW = sum(log_prob(Bernoulli(logits=tanh(z @ W3 + b3) @ W4 + b4), x), axis=-1)
           + sum(log_prob(Normal(0, 1), z), axis=-1) - sum(log_prob(Normal(MU, SIGMA), z), axis=-1)

(``log_prob`` of these scalar-event distributions is elementwise: the pixel / latent axis is summed by
hand).  The planner picks the pathwise estimator for z; ``sg.compile`` gives a torch scalar whose
gradient trains all ten weight tensors (torch parameters passed by name) with Adam.

Data: ``sklearn.datasets.load_digits`` binarized at >= 8, the fixed seed-0 split of examples/vae_digits.py
(1497 train, 300 test).  Prints the test -L_K (nats per image, K = the training K) before and after each
epoch, then the test bounds L_1, L_5, L_50 of the trained model with their Monte Carlo standard errors
(``sg.estimate``, fixed seed), which tighten with K.

    python examples/iwae_digits.py [--epochs 30] [--k 5] [--latent 6] [--hidden 64]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import stochgrad as sg

HIDDEN = "tanh(x @ W1 + b1)"
MU = f"{HIDDEN} @ Wm + bm"
SIGMA = f"exp({HIDDEN} @ Ws + bs)"
LOGITS = "tanh(z @ W3 + b3) @ W4 + b4"
#: log p(x | z) + log p(z) - log q(z | x), each summed over its event axis
LOG_WEIGHT = (f"sum(log_prob(Bernoulli(logits={LOGITS}), x), axis=-1) + sum(log_prob(Normal(0, 1), z), axis=-1)"
              f" - sum(log_prob(Normal({MU}, {SIGMA}), z), axis=-1)")
WEIGHTS = ("W1", "b1", "Wm", "bm", "Ws", "bs", "W3", "b3", "W4", "b4")


def bound(k: int) -> str:
    """The IWAE bound L_K summed over the images of x, as DSL text."""
    return f"E[sum(logmeanexp({LOG_WEIGHT}, axis=0)), z ~ iid({k}, Normal({MU}, {SIGMA}))]"


def load(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = (load_digits().data >= 8).astype(np.float64)
    train, test = train_test_split(x, test_size=300, random_state=seed)
    return train, test


def init_weights(latent: int, hidden: int, seed: int, pixels: int = 64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = {"W1": (pixels, hidden), "Wm": (hidden, latent), "Ws": (hidden, latent),
              "W3": (latent, hidden), "W4": (hidden, pixels)}
    w = {}
    for name in WEIGHTS:
        if name in shapes:
            w[name] = torch.randn(*shapes[name], generator=g, dtype=torch.float64) / shapes[name][0] ** 0.5
        else:
            w[name] = torch.zeros(shapes["W" + name[1:]][1], dtype=torch.float64)
    return {k: v.requires_grad_() for k, v in w.items()}


def numpy_weights(w: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in w.items()}


def test_bounds(w: dict[str, torch.Tensor], x: np.ndarray, ks=(1, 5, 50), n: int = 20, seed: int = 123):
    """{K: (L_K per image, its standard error)} on x, n Monte Carlo draws of the K copies, fixed seed."""
    out = {}
    for k in ks:
        r = sg.estimate(bound(k), {"x": x, **numpy_weights(w)}, n=n, backend="torch", seed=seed, wrt=[])
        out[k] = (float(r.value) / x.shape[0], float(r.value_stderr) / x.shape[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    ap.add_argument("--k", type=int, default=5, help="importance samples per image in training")
    ap.add_argument("--latent", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--eval-n", type=int, default=20, help="Monte Carlo draws for the test bounds")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    train, test = load(seed=0)
    w = init_weights(args.latent, args.hidden, args.seed)
    objective = sg.compile(bound(args.k), backend="torch", n=1, seed=args.seed)
    opt = torch.optim.Adam(list(w.values()), lr=args.lr)
    order = np.random.default_rng(args.seed)
    xt = torch.from_numpy(train)
    print(f"train {train.shape}, test {test.shape}, latent d={args.latent}, hidden {args.hidden}, K={args.k}")
    print(objective.plan(x=(args.batch, 64), **{k: tuple(v.shape) for k, v in w.items()}))
    before = test_bounds(w, test, ks=(args.k,), n=args.eval_n)[args.k]
    print(f"epoch   0  test -L_{args.k} {-before[0]:8.3f} +- {before[1]:.3f} nats/image")
    start, step = time.perf_counter(), 0
    for epoch in range(1, args.epochs + 1):
        perm = order.permutation(train.shape[0])
        total, seen = 0.0, 0
        for i in range(0, train.shape[0], args.batch):
            x = xt[perm[i:i + args.batch]]
            loss = -objective(x=x, **w) / x.shape[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, seen, step = total + loss.item() * x.shape[0], seen + x.shape[0], step + 1
            if args.steps and step >= args.steps:
                break
        value, se = test_bounds(w, test, ks=(args.k,), n=args.eval_n)[args.k]
        print(f"epoch {epoch:3d}  train -L_{args.k} {total / seen:8.3f}  test -L_{args.k} {-value:8.3f} +- {se:.3f}"
              f" nats/image  ({step} steps, {time.perf_counter() - start:.1f}s)", flush=True)
        if args.steps and step >= args.steps:
            break
    print(f"test bounds of the trained model (nats/image, {args.eval_n} draws, seed 123):")
    for k, (value, se) in test_bounds(w, test, n=args.eval_n).items():
        print(f"  L_{k:<3d} {value:9.3f} +- {se:.3f}")


if __name__ == "__main__":
    main()
