"""Hand-written torch reference: a VAE with 20 Bernoulli latents on scikit-learn's digits.

The reference against which ``examples/discrete_vae_digits.py`` (the same model, its ELBO written
as one stochgrad expression) is compared.  Everything but the gradient estimator is shared: the
example imports the data, the networks, the training loop and the evaluation from here.

* Data: ``sklearn.datasets.load_digits`` (1,797 8x8 images bundled with scikit-learn, no
  download), pixels binarized at >= 8 (of 16); a fixed split by
  ``np.random.default_rng(0).permutation``: 1,497 training and 300 test images.
* Model: encoder MLP 64 -> 128 -> 20 latent logits ``l``, q(z|x) = prod_k Bernoulli(z_k; sigmoid(l_k));
  decoder MLP 20 -> 128 -> 64 pixel logits, p(x|z) = prod_j Bernoulli(x_j; sigmoid(dec(z)_j));
  prior p(z) = Bernoulli(0.5)^20.
* Objective: ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)), the KL in closed form; the loss is
  -ELBO averaged over the batch.  Adam, lr 1e-3, batches of 100 (a fresh permutation of the
  training set every epoch, the last partial batch dropped), float64, seeds fixed.
* Gradient estimators of the expected log-likelihood, written out by hand:

  - ``score``: score function (REINFORCE) with n = 4 samples per image and the leave-one-out
    baseline across those n samples (Kool et al. 2019); the decoder gets its pathwise gradient;
  - ``relaxed``: binary Concrete / Gumbel-softmax (Maddison et al. 2017; Jang et al. 2017),
    z = sigmoid((l + log u - log(1 - u)) / 0.5), the decoder evaluated at the relaxed z, n = 1;
  - ``straight_through``: the hard sample forward, the gradient of its mean sigmoid(l) backward
    (Bengio et al. 2013), n = 1;
  - ``score_joint`` (diagnostic, not in the default table): the score function with the whole
    batch's log q(z) as one score, i.e. each image's encoder receives the *batch's* summed
    centred log-likelihood as its learning signal, rather than its own.  Unbiased, but with a
    learning signal ~sqrt(batch) times noisier; this is what stochgrad's ``score`` currently
    computes for a (batch, latent)-shaped node (its score sums log q over all logical axes).

* Evaluation: test -ELBO in nats per image, E_q[log p(x|z)] by Monte Carlo with 100 discrete
  samples per test image (fixed evaluation seed), the KL in closed form.

    python benchmarks/discrete_vae_reference.py [--steps 3000] [--estimators score,relaxed,straight_through]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DTYPE = torch.float64
K = 20  # latent bits
HIDDEN = 128
PIXELS = 64
BATCH = 100
LR = 1e-3
TEMPERATURE = 0.5
N_SCORE = 4  # samples per image for the score function (leave-one-out across them)
N_EVAL = 100  # samples per test image for the test -ELBO
EVAL_SEED = 1234
ESTIMATORS = ("score", "relaxed", "straight_through")
_EPS = torch.finfo(DTYPE).eps


# -- data and model ------------------------------------------------------------------------------------


def load_data(dtype: torch.dtype = DTYPE) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test): binarized digits, shapes (1497, 64) and (300, 64), split by a seed-0 permutation."""
    from sklearn.datasets import load_digits

    x = (load_digits().data >= 8).astype(np.float64)
    perm = np.random.default_rng(0).permutation(len(x))
    train, test = x[perm[:1497]], x[perm[1497:]]
    return torch.as_tensor(train, dtype=dtype), torch.as_tensor(test, dtype=dtype)


class Encoder(nn.Module):
    """x (..., 64) -> latent logits (..., 20)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(PIXELS, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, K))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """z (..., 20) -> pixel logits (..., 64)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(K, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, PIXELS))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def make_model(seed: int) -> tuple[Encoder, Decoder]:
    """Encoder and decoder with the initial weights fixed by ``seed`` (the same on both sides)."""
    torch.manual_seed(seed)
    return Encoder().to(DTYPE), Decoder().to(DTYPE)


def bernoulli_loglik(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log p(x | z) = sum over pixels of x log sigmoid(a) + (1 - x) log sigmoid(-a); broadcasts."""
    return (x * logits - F.softplus(logits)).sum(-1)


def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(Bernoulli(sigmoid(l)) || Bernoulli(0.5)) summed over the last axis, in closed form."""
    q = torch.sigmoid(logits)
    return (q * F.logsigmoid(logits) + (1 - q) * F.logsigmoid(-logits) + math.log(2.0)).sum(-1)


# -- the hand-written estimators ------------------------------------------------------------------------


def _uniform(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=gen, dtype=DTYPE).clamp_(_EPS / 2, 1 - _EPS / 2)


def reference_loss(estimator: str, enc: Encoder, dec: Decoder, gen: torch.Generator,
                   n_score: int = N_SCORE) -> Callable[[torch.Tensor], torch.Tensor]:
    """``loss(x)``: -ELBO averaged over the batch, whose gradient is ``estimator``'s."""

    def loss(x: torch.Tensor) -> torch.Tensor:
        logits = enc(x)  # (B, K)
        kl = kl_to_uniform(logits)  # (B,)
        if estimator in ("score", "score_joint"):
            u = _uniform((n_score,) + tuple(logits.shape), gen)
            z = (u < torch.sigmoid(logits).detach()).to(DTYPE)  # (n, B, K), no gradient path
            f = bernoulli_loglik(x, dec(z))  # (n, B): pathwise gradient for the decoder
            logq = (z * logits - F.softplus(logits)).sum(-1)  # (n, B)
            fd = f.detach()
            baseline = (fd.sum(0, keepdim=True) - fd) / (n_score - 1)  # leave-one-out over the n samples
            if estimator == "score":  # each image's own learning signal
                score = logq - logq.detach()
                expected = f + (fd - baseline) * score
            else:  # one score for the whole batch (diagnostic; see the module docstring)
                score = logq.sum(1, keepdim=True) - logq.sum(1, keepdim=True).detach()  # (n, 1)
                expected = f + ((fd - baseline).sum(1, keepdim=True) / x.shape[0]) * score
            return (kl - expected.mean(0)).mean()
        u = _uniform((1,) + tuple(logits.shape), gen)
        if estimator == "relaxed":
            z = torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / TEMPERATURE)
        elif estimator == "straight_through":
            mean = torch.sigmoid(logits)
            z = mean + ((u < mean).to(DTYPE) - mean).detach()
        else:
            raise ValueError(f"unknown estimator {estimator!r}")
        return (kl - bernoulli_loglik(x, dec(z)).mean(0)).mean()

    return loss


# -- training and evaluation (shared with the stochgrad example) -----------------------------------------


class Trainer:
    """Adam on ``loss`` over shuffled batches of 100 for ``steps`` steps, run in pieces by :meth:`run`
    (so that two trainers can be interleaved and timed under the same background load)."""

    def __init__(self, loss: Callable[[torch.Tensor], torch.Tensor], params: list[torch.Tensor],
                 train: torch.Tensor, steps: int, seed: int) -> None:
        self.loss, self.train, self.opt = loss, train, torch.optim.Adam(params, lr=LR)
        rng = np.random.default_rng(seed)
        per_epoch = len(train) // BATCH
        order: np.ndarray = np.empty(0, dtype=np.int64)
        self.batches = []  # batch indices drawn up front so that the timed loop holds only the steps
        for step in range(steps):
            if step % per_epoch == 0:
                order = rng.permutation(len(train))
            i = step % per_epoch
            self.batches.append(torch.as_tensor(order[i * BATCH:(i + 1) * BATCH]))
        self.step = 0

    @property
    def done(self) -> bool:
        return self.step >= len(self.batches)

    def run(self, k: int) -> tuple[int, float]:
        """Up to ``k`` more steps; returns (steps taken, seconds)."""
        todo = self.batches[self.step:self.step + k]
        start = time.perf_counter()
        for idx in todo:
            x = self.train[idx]
            self.opt.zero_grad(set_to_none=True)
            self.loss(x).backward()
            self.opt.step()
        seconds = time.perf_counter() - start
        self.step += len(todo)
        return len(todo), seconds


def fit(loss: Callable[[torch.Tensor], torch.Tensor], params: list[torch.Tensor], train: torch.Tensor,
        steps: int, seed: int) -> float:
    """Train for ``steps`` steps in one go; returns seconds per step."""
    taken, seconds = Trainer(loss, params, train, steps, seed).run(steps)
    return seconds / max(taken, 1)


@torch.no_grad()
def evaluate_neg_elbo(enc: Encoder, dec: Decoder, x: torch.Tensor, n: int = N_EVAL,
                      seed: int = EVAL_SEED) -> tuple[float, float]:
    """Test -ELBO in nats per image and its Monte Carlo standard error: n discrete samples per image."""
    gen = torch.Generator().manual_seed(seed)
    logits = enc(x)
    z = (torch.rand((n,) + tuple(logits.shape), generator=gen, dtype=DTYPE) < torch.sigmoid(logits)).to(DTYPE)
    ll = bernoulli_loglik(x, dec(z))  # (n, B)
    per_image = kl_to_uniform(logits) - ll.mean(0)
    mc_var = ll.var(0) / n  # Monte Carlo variance of each image's estimate
    return float(per_image.mean()), float(mc_var.sum().sqrt() / len(x))


def train_reference(estimator: str, steps: int = 3000, seed: int = 0,
                    data: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[float, float]:
    """Train with the hand-written ``estimator``; returns (test -ELBO in nats, seconds per step)."""
    train, test = data if data is not None else load_data()
    trainer, enc, dec = reference_trainer(estimator, steps, seed, train)
    taken, seconds = trainer.run(steps)
    return evaluate_neg_elbo(enc, dec, test)[0], seconds / max(taken, 1)


def reference_trainer(estimator: str, steps: int, seed: int, train: torch.Tensor) -> tuple[Trainer, Encoder, Decoder]:
    """A :class:`Trainer` for the hand-written ``estimator`` on a fresh model, and that model."""
    enc, dec = make_model(seed)
    gen = torch.Generator().manual_seed(seed)
    return Trainer(reference_loss(estimator, enc, dec, gen), [*enc.parameters(), *dec.parameters()],
                   train, steps, seed), enc, dec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--estimators", default=",".join(ESTIMATORS),
                    help="comma-separated: score, relaxed, straight_through, score_joint")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_data()
    print(f"hand-written reference: {args.steps} steps, batch {BATCH}, seed {args.seed}\n")
    print(f"{'estimator':<20}{'test -ELBO':>12}{'ms/step':>10}")
    for name in args.estimators.split(","):
        nelbo, sec = train_reference(name.strip(), args.steps, args.seed, data)
        print(f"{name.strip():<20}{nelbo:>12.3f}{1e3 * sec:>10.3f}")


if __name__ == "__main__":
    main()
