"""The Gaussian VAE of ``examples/vae_digits.py`` on the JAX backend: ``optax.adam`` under ``jax.jit``.

The model and the objective are those of the torch example: the per-example ELBO

    E[loglik(x, z, W1, b1, W2, b2), z ~ Normal(mu, sigma)] - sum(KL(Normal(mu, sigma) || Normal(0, 1)), axis=-1)

with ``mu, sigma`` from an MLP encoder and ``loglik`` the MLP decoder's Bernoulli log-likelihood, written in
``jax.numpy``.  JAX has no hidden module state, so the decoder's weights are parameters of the expression
(they arrive in ``loglik`` with the sample axis first, of size 1) and the encoder runs outside it; the
planner picks the pathwise estimator for ``z`` and the closed-form KL.

``f = sg.compile(elbo, backend="jax", n=1)`` is a pure function of a PRNG key and the parameters, so one
training step -- encoder, ``f(key=k, ...)``, ``jax.value_and_grad`` over every weight, ``optax.adam`` --
is one ``jax.jit``-compiled function.  The key is split once per step, so no step reuses another's noise.
After each epoch the held-out ELBO (16 samples of ``z``, one fixed key: the same noise each epoch) is printed.

Data: ``sklearn.datasets.load_digits`` (1797 images, no download), pixels binarized at >= 8, the torch
example's seed-0 split of 1497 training and 300 test images.

    python examples/vae_digits_jax.py [--steps 3000] [--seed 0] [--batch 100] [--latent 8]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import stochgrad as sg

ELBO = ("E[loglik(x, z, W1, b1, W2, b2), z ~ Normal(mu, sigma)]"
        " - sum(KL(Normal(mu, sigma) || Normal(0, 1)), axis=-1)")
DECODER = ("W1", "b1", "W2", "b2")


def load(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = (load_digits().data >= 8).astype(np.float32)
    train, test = train_test_split(x, test_size=300, random_state=seed)
    return train, test


def init(key: Any, pixels: int = 64, hidden: int = 256, latent: int = 8) -> dict[str, Any]:
    """Encoder and decoder weights (LeCun-uniform, as torch.nn.Linear): a dict of float32 arrays."""
    shapes = {"V1": (pixels, hidden), "c1": (hidden,), "V2": (hidden, 2 * latent), "c2": (2 * latent,),
              "W1": (latent, hidden), "b1": (hidden,), "W2": (hidden, pixels), "b2": (pixels,)}
    fan_in = {"V1": pixels, "c1": pixels, "V2": hidden, "c2": hidden, "W1": latent, "b1": latent, "W2": hidden,
              "b2": hidden}
    keys = jax.random.split(key, len(shapes))
    return {k: jax.random.uniform(kk, s, jnp.float32, -1.0, 1.0) / np.sqrt(fan_in[k])
            for kk, (k, s) in zip(keys, shapes.items())}


def encode(params: dict[str, Any], x: Any) -> tuple[Any, Any]:
    h = jax.nn.relu(x @ params["V1"] + params["c1"])
    mu, log_sigma = jnp.split(h @ params["V2"] + params["c2"], 2, axis=-1)
    return mu, jnp.exp(log_sigma)


def loglik(x: Any, z: Any, W1: Any, b1: Any, W2: Any, b2: Any) -> Any:
    """log p(x | z), independent Bernoulli pixels: x (1, B, 64), z (n, B, d), weights (1, ...) -> (n, B)."""
    W1, b1, W2, b2 = W1[0], b1[0], W2[0], b2[0]  # parameters arrive with a sample axis of size 1
    logits = jax.nn.relu(z @ W1 + b1) @ W2 + b2
    return jnp.sum(x * logits - jax.nn.softplus(logits), axis=-1)


def objectives(n_eval: int = 16) -> tuple[sg.Objective, sg.Objective]:
    """The training objective (one sample of z per example) and the held-out one (``n_eval`` samples)."""
    elbo = sg.parse(ELBO, functions={"loglik": sg.UserFunction(loglik, name="loglik")})
    return sg.compile(elbo, backend="jax", n=1), sg.compile(elbo, backend="jax", n=n_eval)


def make_step(f: sg.Objective, opt: optax.GradientTransformation) -> Any:
    """One jitted Adam step on a batch: the mean -ELBO per image, its gradient in every weight."""

    def loss(params: dict[str, Any], x: Any, key: Any) -> Any:
        mu, sigma = encode(params, x)
        return -f(key=key, x=x, mu=mu, sigma=sigma, **{k: params[k] for k in DECODER}) / x.shape[0]

    @jax.jit
    def step(params: dict[str, Any], opt_state: Any, x: Any, key: Any) -> tuple[Any, Any, Any]:
        value, grads = jax.value_and_grad(loss)(params, x, key)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def make_eval(f: sg.Objective) -> Any:
    """Held-out -ELBO in nats per image, jitted; called with one fixed key, it draws the same noise each time."""

    @jax.jit
    def nelbo(params: dict[str, Any], x: Any, key: Any) -> Any:
        mu, sigma = encode(params, x)
        return -f(key=key, x=x, mu=mu, sigma=sigma, **{k: params[k] for k in DECODER}) / x.shape[0]

    return nelbo


def train(steps: int, seed: int = 0, batch: int = 100, latent: int = 8, hidden: int = 256, lr: float = 1e-3,
          every: int | None = None, data: tuple[np.ndarray, np.ndarray] | None = None,
          log: Any = print) -> list[tuple[int, float]]:
    """Train for ``steps`` Adam steps; returns ``[(step, held-out -ELBO)]`` at step 0, every ``every`` steps
    (default: once per epoch) and at the end."""
    train_x, test_x = load() if data is None else data
    key = jax.random.key(seed)
    key, k_init = jax.random.split(key)
    params = init(k_init, pixels=train_x.shape[1], hidden=hidden, latent=latent)
    f, f_eval = objectives()
    opt = optax.adam(lr)
    opt_state = opt.init(params)
    step, nelbo = make_step(f, opt), make_eval(f_eval)
    eval_key, test = jax.random.key(12345), jnp.asarray(test_x)
    every = every or max(1, train_x.shape[0] // batch)
    rng = np.random.default_rng(seed)
    order, at = rng.permutation(train_x.shape[0]), 0
    history = [(0, float(nelbo(params, test, eval_key)))]
    log(f"step {0:5d}  held-out -ELBO {history[-1][1]:8.3f} nats/image")
    start = time.perf_counter()
    for t in range(1, steps + 1):
        if at + batch > len(order):
            order, at = rng.permutation(train_x.shape[0]), 0
        x = jnp.asarray(train_x[order[at:at + batch]])
        at += batch
        key, k = jax.random.split(key)  # fresh noise for every step
        params, opt_state, value = step(params, opt_state, x, k)
        if t % every == 0 or t == steps:
            history.append((t, float(nelbo(params, test, eval_key))))
            log(f"step {t:5d}  train -ELBO {float(value):8.3f}  held-out -ELBO {history[-1][1]:8.3f} nats/image"
                f"  ({time.perf_counter() - start:.1f}s)")
    return history


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3000, help="Adam steps (15 per epoch at --batch 100)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--latent", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--every", type=int, default=None, help="print the held-out ELBO every this many steps")
    args = ap.parse_args()
    train_x, test_x = load()
    f, _ = objectives()
    shapes = {"x": (args.batch, 64), "mu": (args.batch, args.latent), "sigma": (args.batch, args.latent),
              "W1": (args.latent, args.hidden), "b1": (args.hidden,), "W2": (args.hidden, 64), "b2": (64,)}
    print(f"train {train_x.shape}, test {test_x.shape}, latent d={args.latent}, jax {jax.__version__},"
          f" optax {optax.__version__}")
    print(f.plan(**shapes))
    history = train(args.steps, seed=args.seed, batch=args.batch, latent=args.latent, hidden=args.hidden,
                    lr=args.lr, every=args.every, data=(train_x, test_x))
    print(f"held-out -ELBO {history[0][1]:.3f} -> {history[-1][1]:.3f} nats/image after {args.steps} steps")


if __name__ == "__main__":
    main()
