"""A Gaussian VAE (Kingma & Welling 2014) on scikit-learn's bundled 8x8 digits, trained with stochgrad.

The whole objective is one stochgrad expression: the per-example ELBO

    E[loglik(x, z), z ~ Normal(mu, sigma)] - sum(KL(Normal(mu, sigma) || Normal(0, 1)), axis=-1)

where ``mu`` and ``sigma`` come from an MLP encoder, ``loglik`` is a user function wrapping the MLP
decoder's Bernoulli log-likelihood, the planner picks the pathwise (reparameterization) estimator for
``z`` and the KL is the closed form.  ``sg.compile`` turns it into a torch scalar (the ELBO summed
over the batch) for ``torch.optim.Adam``.

Shapes: x is (B, 64) and arrives in ``loglik`` as (1, B, 64); mu and sigma are (B, d); z is
(n, B, d); ``loglik`` returns (n, B).  The KL is summed over the latent axis only (``axis=-1``) so
that it lines up with the (B,)-shaped expectation: a plain ``sum(KL(...))`` would be a scalar that
broadcasts against every example and is counted B times.

Data: ``sklearn.datasets.load_digits`` (1797 images, no download), pixels binarized at >= 8, a fixed
seed-0 split of 1497 training and 300 test images.  Prints the test -ELBO (nats per image, 16 samples
of z, the same noise every epoch) after each epoch and saves test reconstructions and samples from
the prior to a PNG.

    python examples/vae_digits.py [--epochs 30] [--out vae_digits.png]
"""

import argparse
import sys
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import stochgrad as sg

ELBO = "E[loglik(x, z), z ~ Normal(mu, sigma)] - sum(KL(Normal(mu, sigma) || Normal(0, 1)), axis=-1)"


def load(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    x = (load_digits().data >= 8).astype(np.float32)
    train, test = train_test_split(x, test_size=300, random_state=seed)
    return torch.from_numpy(train), torch.from_numpy(test)


class VAE(torch.nn.Module):
    def __init__(self, pixels: int = 64, hidden: int = 256, latent: int = 8) -> None:
        super().__init__()
        self.encoder = torch.nn.Sequential(torch.nn.Linear(pixels, hidden), torch.nn.ReLU(),
                                           torch.nn.Linear(hidden, 2 * latent))
        self.decoder = torch.nn.Sequential(torch.nn.Linear(latent, hidden), torch.nn.ReLU(),
                                           torch.nn.Linear(hidden, pixels))
        self.latent = latent

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_sigma = self.encoder(x).chunk(2, dim=-1)
        return mu, log_sigma.exp()

    def loglik(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) under independent Bernoulli pixels: x (1, B, 64), z (n, B, d) -> (n, B)."""
        logits = self.decoder(z)
        return -torch.nn.functional.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none").sum(-1)


def bar(done: int, total: int, width: int = 30) -> str:
    k = round(width * done / total)
    return "[" + "#" * k + "-" * (width - k) + f"] {done}/{total}"


def evaluate(model: VAE, elbo, x: torch.Tensor, n: int = 16, seed: int = 12345) -> float:
    """Test -ELBO in nats per image; a fresh objective with a fixed seed draws the same noise each time."""
    f = sg.compile(elbo, backend="torch", n=n, seed=seed, backend_options={"dtype": "float32"})
    with torch.no_grad():
        mu, sigma = model.encode(x)
        return -f(x=x, mu=mu, sigma=sigma).item() / x.shape[0]


def save_figure(model: VAE, test: torch.Tensor, path: str, rows: int = 2, cols: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        originals = test[: rows * cols]
        recon = torch.sigmoid(model.decoder(model.encode(originals)[0]))  # decoder mean at the posterior mean
        prior = torch.sigmoid(model.decoder(torch.randn(rows * cols, model.latent, generator=g)))
    panels = [("test images", originals), ("reconstructions", recon), ("samples from the prior", prior)]
    fig, axes = plt.subplots(3 * rows, cols, figsize=(cols * 0.9, 3 * rows * 0.9 + 0.6))
    for p, (title, images) in enumerate(panels):
        for i in range(rows * cols):
            ax = axes[p * rows + i // cols, i % cols]
            ax.imshow(images[i].reshape(8, 8).numpy(), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[p * rows, 0].set_title(title, loc="left", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--out", default="vae_digits.png", help="where to save the PNG")
    ap.add_argument("--latent", type=int, default=8)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    train, test = load(seed=0)
    model = VAE(latent=args.latent)
    elbo = sg.parse(ELBO, functions={"loglik": sg.UserFunction(model.loglik, name="loglik")})
    objective = sg.compile(elbo, backend="torch", n=1, seed=args.seed, backend_options={"dtype": "float32"})
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    order = torch.Generator().manual_seed(args.seed)
    tty = sys.stdout.isatty()

    print(f"train {tuple(train.shape)}, test {tuple(test.shape)}, latent d={args.latent}")
    print(objective.plan(x=(args.batch, 64), mu=(args.batch, args.latent), sigma=(args.batch, args.latent)))
    print(f"epoch {0:3d}  test -ELBO {evaluate(model, elbo, test):8.3f} nats/image")
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(train.shape[0], generator=order)
        batches = [perm[i:i + args.batch] for i in range(0, train.shape[0], args.batch)]
        total = 0.0
        for b, idx in enumerate(batches, 1):
            x = train[idx]
            mu, sigma = model.encode(x)
            loss = -objective(x=x, mu=mu, sigma=sigma) / x.shape[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * x.shape[0]
            if tty:
                print(f"\repoch {epoch:3d} {bar(b, len(batches))}", end="", flush=True)
        test_nelbo = evaluate(model, elbo, test)
        line = (f"epoch {epoch:3d} {bar(epoch, args.epochs)}  train -ELBO {total / train.shape[0]:8.3f}"
                f"  test -ELBO {test_nelbo:8.3f} nats/image  ({time.perf_counter() - start:.1f}s)")
        print(("\r" if tty else "") + line, flush=True)
    save_figure(model, test, args.out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
