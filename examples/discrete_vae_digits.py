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
``benchmarks/discrete_vae_reference.py``, which is trained alongside for comparison.

    python examples/discrete_vae_digits.py [--steps 3000] [--estimators score,relaxed,straight_through]
"""

from __future__ import annotations

import argparse
import math
import pathlib
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
    """The compiled ELBO (summed over the batch) for one estimator override."""
    loglik = sg.UserFunction(lambda x, z: ref.bernoulli_loglik(x, dec(z)), name="loglik")
    expr = sg.parse(ELBO, functions={"loglik": loglik})
    return sg.compile(expr, backend="torch", n=n, seed=seed, estimators={"z": estimator}, dtype=ref.DTYPE)


def train_stochgrad(name: str, steps: int, seed: int, data: tuple[torch.Tensor, torch.Tensor]
                    ) -> tuple[float, float, float, str]:
    """(test -ELBO, seconds per step, stochgrad's own estimate of the test -ELBO, the plan)."""
    train, test = data
    enc, dec = ref.make_model(seed)  # the reference's initial weights
    estimator, n = OVERRIDES[name]
    f = elbo_objective(dec, estimator, n, seed)
    sec = ref.fit(lambda x: -f(x=x, l=enc(x)) / x.shape[0], [*enc.parameters(), *dec.parameters()],
                  train, steps, seed)
    nelbo, _ = ref.evaluate_neg_elbo(enc, dec, test)
    with torch.no_grad():  # the same quantity from the expression itself (discrete samples)
        own = -float(elbo_objective(dec, "score", ref.N_EVAL, ref.EVAL_SEED)(x=test, l=enc(test))) / len(test)
    plan = str(f.plan(x=tuple(train[:ref.BATCH].shape), l=(ref.BATCH, ref.K)))
    return nelbo, sec, own, plan


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
          " 'sg eval' is stochgrad's own estimate of the stochgrad model's test -ELBO\n")
    rows = []
    start = time.perf_counter()
    for name in names:
        r_nelbo, r_sec = ref.train_reference(name, args.steps, args.seed, data)
        s_nelbo, s_sec, own, plan = train_stochgrad(name, args.steps, args.seed, data)
        rows.append((name, r_nelbo, s_nelbo, own, r_sec, s_sec))
        print(f"plan ({name}):\n    " + plan.replace("\n", "\n    "))
    header = (f"{'estimator':<18}{'ref -ELBO':>11}{'sg -ELBO':>11}{'diff':>8}{'sg eval':>10}"
              f"{'ref ms/step':>13}{'sg ms/step':>12}{'ratio':>8}")
    print("\n" + header)
    print("-" * len(header))
    for name, r_nelbo, s_nelbo, own, r_sec, s_sec in rows:
        print(f"{name:<18}{r_nelbo:>11.3f}{s_nelbo:>11.3f}{s_nelbo - r_nelbo:>+8.3f}{own:>10.3f}"
              f"{1e3 * r_sec:>13.3f}{1e3 * s_sec:>12.3f}{s_sec / r_sec:>7.2f}x")
    bad = [name for name, *nums in rows if not all(math.isfinite(v) for v in nums)]
    print(f"\ntotal {time.perf_counter() - start:.1f} s" + (f"; NON-FINITE: {', '.join(bad)}" if bad else ""))


if __name__ == "__main__":
    main()
