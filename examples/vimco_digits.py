"""A Bernoulli-latent VAE (a one-layer sigmoid belief net) on scikit-learn's 8x8 digits, trained on the
K-sample bound with VIMCO (Mnih & Rezende 2016) against the score function, all in the stochgrad DSL.

Model: z ~ Bernoulli(logits = c) (d binary latents), x | z ~ Bernoulli(logits = z Wd + bd) over the 64
pixels.  Encoder: q(z | x) = Bernoulli(logits = tanh(x W1 + b1) We + be).  The K-sample bound of a batch
(one latent per image: z ~ iid(K, Q) has shape (K, batch, d), the log weights (K, batch)):

    E[sum(logmeanexp(LOGW, axis=0)), z ~ iid(K, Bernoulli(logits=ENC))]
    LOGW = sum(log_prob(Bernoulli(logits=c), z), axis=-1) + sum(log_prob(Bernoulli(logits=z @ Wd + bd), x), axis=-1)
           - sum(log_prob(Bernoulli(logits=ENC), z), axis=-1)

The latents are discrete, so the encoder's gradient is a score function.  ``"vimco"`` scores each copy
with the leave-one-out of the other K - 1 copies as baseline, and pairs each image's signal with that
image's own log q (its plan says "paired per example over <batch> examples"); ``"score"`` multiplies the
whole batch's bound by the whole log q, with a leave-one-out over the n samples as baseline.  Both use
n = 2 draws of the K copies per step (the same cost evaluations), the same initial weights, batches and
Adam.  Printed: the plans, then every ``--every`` steps the held-out bound L_K (nats per image, with its
Monte Carlo standard error from ``sg.estimate``, fixed seed) of each estimator's model.

    python examples/vimco_digits.py [--steps 400] [--k 5] [--latent 16] [--batch 50] [--estimators vimco,score]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import stochgrad as sg

ENC = "tanh(x @ W1 + b1) @ We + be"
LOG_WEIGHT = ("sum(log_prob(Bernoulli(logits=c), z), axis=-1)"
              " + sum(log_prob(Bernoulli(logits=z @ Wd + bd), x), axis=-1)"
              f" - sum(log_prob(Bernoulli(logits={ENC}), z), axis=-1)")
WEIGHTS = ("W1", "b1", "We", "be", "c", "Wd", "bd")


def bound(k: int) -> str:
    """The K-sample bound L_K summed over the images of x, as DSL text."""
    return f"E[sum(logmeanexp({LOG_WEIGHT}, axis=0)), z ~ iid({k}, Bernoulli(logits={ENC}))]"


def load(seed: int = 0, n_test: int = 300) -> tuple[np.ndarray, np.ndarray]:
    x = (load_digits().data >= 8).astype(np.float64)
    train, test = train_test_split(x, test_size=n_test, random_state=seed)
    return train, test


def init_weights(latent: int, hidden: int, seed: int, pixels: int = 64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = {"W1": (pixels, hidden), "We": (hidden, latent), "Wd": (latent, pixels)}
    w = {name: torch.randn(*shape, generator=g, dtype=torch.float64) / shape[0] ** 0.5 for name, shape in shapes.items()}
    w.update(b1=torch.zeros(hidden, dtype=torch.float64), be=torch.zeros(latent, dtype=torch.float64),
             c=torch.zeros(latent, dtype=torch.float64), bd=torch.zeros(pixels, dtype=torch.float64))
    return {k: w[k].requires_grad_() for k in WEIGHTS}


def held_out(w: dict[str, torch.Tensor], x: np.ndarray, k: int, n: int, seed: int = 123) -> tuple[float, float]:
    """L_K per image on x and its standard error: n Monte Carlo draws of the K copies, fixed seed."""
    params = {"x": x, **{name: v.detach().numpy().copy() for name, v in w.items()}}
    r = sg.estimate(bound(k), params, n=n, backend="torch", seed=seed, wrt=[])
    return float(r.value) / x.shape[0], float(r.value_stderr) / x.shape[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--k", type=int, default=5, help="copies of the latents per image (the bound's K)")
    ap.add_argument("--latent", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--n", type=int, default=2, help="draws of the K copies per step (score's leave-one-out needs 2)")
    ap.add_argument("--every", type=int, default=100, help="evaluate the held-out bound every this many steps")
    ap.add_argument("--eval-n", type=int, default=20, help="Monte Carlo draws for the held-out bound")
    ap.add_argument("--n-test", type=int, default=300, help="held-out images")
    ap.add_argument("--estimators", default="vimco,score")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    names = [s.strip() for s in args.estimators.split(",") if s.strip()]
    for name in names:
        if name not in ("vimco", "score"):
            ap.error(f"unknown estimator {name!r}; choose from vimco, score")

    train, test = load(n_test=args.n_test)
    xt = torch.from_numpy(train)
    print(f"train {train.shape}, held-out {test.shape}, latent d={args.latent} (Bernoulli), hidden {args.hidden},"
          f" K={args.k}, batch {args.batch}, n={args.n}, {args.steps} steps of Adam (lr {args.lr})")
    models = {}
    for name in names:
        w = init_weights(args.latent, args.hidden, args.seed)  # the same start for each estimator
        f = sg.compile(bound(args.k), backend="torch", n=args.n, seed=args.seed, estimators={"z": name})
        models[name] = (w, f, torch.optim.Adam(list(w.values()), lr=args.lr))
        print(f"plan ({name}):\n    " + str(f.plan(x=(args.batch, 64), **{k: tuple(v.shape) for k, v in w.items()}))
              .replace("\n", "\n    "))
    value, se = held_out(models[names[0]][0], test, args.k, args.eval_n)
    print(f"\nheld-out -L_{args.k} (nats/image, {args.eval_n} draws) at step 0: {-value:.3f} +- {se:.3f}")
    print(f"{'step':>6}" + "".join(f"{name + ' held-out -L_' + str(args.k):>28}" for name in names))
    order = np.random.default_rng(args.seed)
    start, seconds = time.perf_counter(), dict.fromkeys(names, 0.0)
    for step in range(1, args.steps + 1):
        x = xt[order.choice(train.shape[0], args.batch, replace=False)]  # the same batch for each estimator
        for name, (w, f, opt) in models.items():
            t0 = time.perf_counter()
            loss = -f(x=x, **w) / x.shape[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
            seconds[name] += time.perf_counter() - t0
        if step % args.every == 0 or step == args.steps:
            cells = []
            for w, _, _ in models.values():
                value, se = held_out(w, test, args.k, args.eval_n)
                cells.append(f"{-value:>20.3f} +- {se:<5.3f}")
            print(f"{step:>6}" + "".join(cells), flush=True)
    spent = ", ".join(f"{name} {s:.1f} s" for name, s in seconds.items())
    print(f"training time: {spent}; total {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
