"""A VAE with 20 Bernoulli latents on scikit-learn's digits, its ELBO as ONE stochgrad expression.

    ELBO = E[loglik(x, z), z ~ Bernoulli(logits=l)] - sum(KL(Bernoulli(logits=l) || Bernoulli(0.5)), axis=-1)

``l = encoder(x)`` has shape (batch, 20); ``loglik(x, z)`` is a user function running the decoder
network on z, of shape (n, batch, 20), and returning log p(x | z) of shape (n, batch).  The KL is
closed form, (1, batch, 20), summed over its last axis only, so that it lines up with the batch
axis of the expectation (a plain ``sum(KL(...))`` would reduce the batch too and then be broadcast
back over it: the KL counted batch times).  ``sg.compile`` returns the sum over the batch of the
Monte Carlo ELBO, so the loss is its negative divided by the batch size.

The gradient estimator is a single override, ``estimators={"z": ...}``: ``"score"`` (n = 4
samples per image, the default leave-one-out baseline across them), ``"relaxed:temperature=0.5"``
or ``"straight_through"`` (n = 1).  Data, networks, training loop and the test -ELBO evaluation
(100 discrete samples per test image, closed-form KL) come from the hand-written torch reference
``benchmarks/discrete_vae_reference.py``, which is trained alongside for comparison: the two
train in alternating blocks of 100 steps, so that both are timed under the same background load
(the noise differs: each side draws its own).

    python examples/discrete_vae_digits.py [--steps 3000] [--estimators score,relaxed,straight_through]
"""

from __future__ import annotations

import argparse
import math
import pathlib
import statistics
import sys
import time

import torch

import stochgrad as sg

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))
import discrete_vae_reference as ref  # noqa: E402

ELBO = "E[loglik(x, z), z ~ Bernoulli(logits=l)] - sum(KL(Bernoulli(logits=l) || Bernoulli(0.5)), axis=-1)"

#: estimator name on the command line -> (stochgrad override, samples per call)
OVERRIDES = {
    "score": ("score", ref.N_SCORE),
    "relaxed": (f"relaxed:temperature={ref.TEMPERATURE}", 1),
    "straight_through": ("straight_through", 1),
}


def elbo_objective(dec: ref.Decoder, estimator: str, n: int, seed: int) -> sg.Objective:
    """The compiled ELBO (summed over the batch) for one estimator override.

    ``batch_axes=1``: the images of a batch are independent (the decoder works per image), so each
    image's score term pairs with its own log-likelihood and baseline, as in the reference."""
    loglik = sg.UserFunction(lambda x, z: ref.bernoulli_loglik(x, dec(z)), name="loglik")
    expr = sg.parse(ELBO, functions={"loglik": loglik})
    return sg.compile(expr, backend="torch", n=n, seed=seed, estimators={"z": estimator},
                      backend_options={"dtype": ref.DTYPE}, batch_axes=1)


def stochgrad_trainer(name: str, steps: int, seed: int, train: torch.Tensor
                      ) -> tuple[ref.Trainer, ref.Encoder, ref.Decoder, sg.Objective]:
    """The same model, initial weights, batches and optimizer as the reference; the loss from stochgrad."""
    enc, dec = ref.make_model(seed)
    estimator, n = OVERRIDES[name]
    f = elbo_objective(dec, estimator, n, seed)
    loss = lambda x: -f(x=x, l=enc(x)) / x.shape[0]  # noqa: E731
    return ref.Trainer(loss, [*enc.parameters(), *dec.parameters()], train, steps, seed), enc, dec, f


def compare(name: str, steps: int, seed: int, data: tuple[torch.Tensor, torch.Tensor], block: int = 100) -> dict:
    """Train the reference and the stochgrad model in alternating blocks of ``block`` steps (which goes
    first alternates too), so both are timed under the same background load; evaluate both."""
    train, test = data
    r_trainer, r_enc, r_dec = ref.reference_trainer(name, steps, seed, train)
    s_trainer, s_enc, s_dec, f = stochgrad_trainer(name, steps, seed, train)
    r_ms, s_ms = [], []  # per-block milliseconds per step
    totals = {id(r_trainer): 0.0, id(s_trainer): 0.0}  # seconds of training
    i = 0
    while not (r_trainer.done and s_trainer.done):
        pair = [(r_trainer, r_ms), (s_trainer, s_ms)]
        for trainer, out in pair if i % 2 == 0 else pair[::-1]:
            taken, seconds = trainer.run(block)
            totals[id(trainer)] += seconds
            if taken:
                out.append(1e3 * seconds / taken)
        i += 1
    with torch.no_grad():  # the stochgrad model's test -ELBO from the expression itself (discrete samples)
        own = -float(elbo_objective(s_dec, "score", ref.N_EVAL, ref.EVAL_SEED)(x=test, l=s_enc(test))) / len(test)
    return {
        "ref": ref.evaluate_neg_elbo(r_enc, r_dec, test)[0],
        "sg": ref.evaluate_neg_elbo(s_enc, s_dec, test)[0],
        "own": own,
        "ref_ms": statistics.median(r_ms), "sg_ms": statistics.median(s_ms),
        "ratio": statistics.median(b / a for a, b in zip(r_ms, s_ms)),
        "ref_total": totals[id(r_trainer)], "sg_total": totals[id(s_trainer)],
        "plan": str(f.plan(x=(ref.BATCH, ref.PIXELS), l=(ref.BATCH, ref.K))),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--estimators", default=",".join(OVERRIDES), help=f"comma-separated from {', '.join(OVERRIDES)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both sides (default 1)")
    args = ap.parse_args()
    names = [s.strip() for s in args.estimators.split(",") if s.strip()]
    for name in names:
        if name not in OVERRIDES:
            ap.error(f"unknown estimator {name!r}; choose from {', '.join(OVERRIDES)}")
    torch.set_num_threads(args.threads)
    data = ref.load_data()
    print(f"ELBO = {ELBO}")
    print(f"digits: {len(data[0])} train / {len(data[1])} test, {args.steps} steps of Adam (lr {ref.LR}),"
          f" batch {ref.BATCH}, seed {args.seed}, {str(ref.DTYPE).replace('torch.', '')},"
          f" {torch.get_num_threads()} thread(s)")
    print(f"test -ELBO: nats per image, {ref.N_EVAL} samples per test image, the same evaluation for both;"
          " 'sg eval' is stochgrad's own estimate of the stochgrad model's test -ELBO")
    print("ms/step: median over blocks of 100 steps, reference and stochgrad blocks interleaved;"
          " ratio: median of the per-block ratios\n")
    rows = []
    start = time.perf_counter()
    for name in names:
        r = compare(name, args.steps, args.seed, data)
        rows.append((name, r))
        print(f"plan ({name}):\n    " + r["plan"].replace("\n", "\n    "))
    header = (f"{'estimator':<18}{'ref -ELBO':>11}{'sg -ELBO':>11}{'diff':>8}{'sg eval':>10}"
              f"{'ref ms/step':>13}{'sg ms/step':>12}{'ratio':>8}")
    print("\n" + header)
    print("-" * len(header))
    for name, r in rows:
        print(f"{name:<18}{r['ref']:>11.3f}{r['sg']:>11.3f}{r['sg'] - r['ref']:>+8.3f}{r['own']:>10.3f}"
              f"{r['ref_ms']:>13.3f}{r['sg_ms']:>12.3f}{r['ratio']:>7.2f}x")
    bad = [name for name, r in rows if not all(math.isfinite(v) for v in r.values() if isinstance(v, float))]
    totals = ", ".join(f"{name} {r['ref_total']:.1f} s / {r['sg_total']:.1f} s" for name, r in rows)
    print(f"\ntraining time (reference / stochgrad): {totals}")
    print(f"total {time.perf_counter() - start:.1f} s" + (f"; NON-FINITE: {', '.join(bad)}" if bad else ""))


if __name__ == "__main__":
    main()
