"""Gradient estimators for discrete VAEs on digits: encoder gradient variance, time per step, test -ELBO.

Two models, each written as ONE stochgrad expression and also trained by a HAND-WRITTEN plain-torch
leave-one-out estimator (``hand_loo``, below: no stochgrad in it) on the same model:

* ``bernoulli``: 200 Bernoulli latents (DisARM paper's setting, Dong et al. 2020, on scikit-learn's
  8x8 digits binarized at >= 8), prior Bernoulli(0.5)^200,
  ``E[loglik(x, z), z ~ Bernoulli(logits=l)] - sum(KL(Bernoulli(logits=l) || Bernoulli(0.5)), axis=-1)``;
* ``categorical``: 20 latents x 10 classes, uniform prior,
  ``E[loglik(x, z), z ~ Categorical(logits=l)] - sum(KL(Categorical(logits=l) || Categorical(logits=m)), axis=-1)``
  with ``m = 0`` (the KL summed over the 20 latents; each Categorical's event axis is summed by KL).

Encoder and decoder are linear (``--hidden 0``, the default) or one hidden ReLU layer.  ``batch_axes=1``:
every image's score term pairs its own log q with its own cost and baseline, as the hand-written one.
Data, batches (100), Adam (lr 1e-3), float64 come from ``discrete_vae_reference.py``.

Estimators come from the command line (override strings, ``"score"``, ``"disarm"``,
``"relaxed:temperature=0.5"``, ...) or, by default, from the registry: every registered estimator whose
``requires`` accepts the model's node and that gives the node's parameters a gradient (it scores the
node, or differentiates through the sample).  One that is refused (by ``requires`` or by the compiled
program, e.g. REBAR under ``batch_axes``) is reported with its refusal, never measured.  Every estimator
draws ``--n`` samples per image (REBAR-like estimators evaluate the cost more often: see ``evals``).

Per model and torch thread count (``--threads 1 2``), in one process:

1. gradient variance of the encoder at fixed parameters (the seeded initial weights): ``--draws``
   independent gradients of the loss on one fixed batch; the sum over encoder parameters of their
   variances (and the ratio to the hand-written LOO's);
2. training, every estimator and the hand-written LOO interleaved in rounds of ``--block`` steps (the
   order rotating), so all see the same background load: ms per step (median over rounds) and the
   median over rounds of the per-round ratio to the hand-written LOO; test -ELBO (nats per image,
   ``--eval-n`` discrete samples per test image, closed-form KL, fixed noise) after ``--steps`` steps
   AND after ``--wall`` seconds of training (the first round boundary past it).

    python benchmarks/bench_estimators.py [--quick] [--models bernoulli categorical] [--threads 1 2]
        [--estimators score score:baseline=none disarm ...] [--steps 2000] [--wall 10] [--draws 200]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import stochgrad as sg
from stochgrad.distributions import lookup
from stochgrad.errors import StochgradError
from stochgrad.estimators import ESTIMATORS, EstimatorSpec, applicable, as_spec

sys.path.insert(0, str(Path(__file__).resolve().parent))
import discrete_vae_reference as ref  # data, batches, Adam settings

DTYPE = torch.float64
HAND = "hand LOO"  # the hand-written torch leave-one-out estimator's row


class Model:
    """A discrete VAE: encoder x (B, 64) -> logits (B, K) or (B, G, C); decoder z -> pixel logits."""

    def __init__(self, kind: str, latents: int, classes: int, hidden: int, seed: int) -> None:
        self.kind, self.latents, self.classes = kind, latents, classes
        width = latents * (classes if kind == "categorical" else 1)
        torch.manual_seed(seed)

        def net(a: int, b: int) -> torch.nn.Module:
            if not hidden:
                return torch.nn.Linear(a, b)
            return torch.nn.Sequential(torch.nn.Linear(a, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, b))

        self.enc, self.dec = net(ref.PIXELS, width).to(DTYPE), net(width, ref.PIXELS).to(DTYPE)
        self.width = width
        self.capture: list[torch.Tensor] | None = None  # a list: the z's the stochgrad cost sees go there

    def params(self) -> list[torch.Tensor]:
        return [*self.enc.parameters(), *self.dec.parameters()]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        lg = self.enc(x)
        return lg.reshape(lg.shape[:-1] + (self.latents, self.classes)) if self.kind == "categorical" else lg

    def loglik(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z): z (n, B, K) or (n, B, G, C) one-hot -> (n, B)."""
        if self.kind == "categorical":
            z = z.reshape(z.shape[:-2] + (self.width,))
        return ref.bernoulli_loglik(x, self.dec(z))

    # -- plain torch pieces of the hand-written estimator and the evaluation --------------------------------

    def sample(self, lg: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
        u = torch.rand((n,) + tuple(lg.shape), generator=gen, dtype=DTYPE).clamp_(1e-300, 1 - 1e-16)
        if self.kind == "bernoulli":
            return (u < torch.sigmoid(lg)).to(DTYPE)
        return F.one_hot(torch.argmax(lg - torch.log(-torch.log(u)), -1), self.classes).to(DTYPE)  # Gumbel-max

    def log_q(self, lg: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log q(z | x) per sample and image, (n, B)."""
        if self.kind == "bernoulli":
            return (z * lg - F.softplus(lg)).sum(-1)
        return (z * torch.log_softmax(lg, -1)).sum((-1, -2))

    def kl(self, lg: torch.Tensor) -> torch.Tensor:
        """KL(q(z | x) || uniform prior) per image, in closed form."""
        if self.kind == "bernoulli":
            return ref.kl_to_uniform(lg)
        lp = torch.log_softmax(lg, -1)
        return (lp.exp() * (lp + math.log(self.classes))).sum((-1, -2))

    @torch.no_grad()
    def neg_elbo(self, x: torch.Tensor, n: int, seed: int = ref.EVAL_SEED) -> tuple[float, float]:
        """Test -ELBO, nats per image, and its Monte Carlo standard error (n samples per image)."""
        lg = self.logits(x)
        ll = self.loglik(x, self.sample(lg, n, torch.Generator().manual_seed(seed)))
        per_image = self.kl(lg) - ll.mean(0)
        return float(per_image.mean()), float((ll.var(0) / n).sum().sqrt() / len(x))

    # -- stochgrad ------------------------------------------------------------------------------------------

    def text(self) -> str:
        if self.kind == "bernoulli":
            return ("E[loglik(x, z), z ~ Bernoulli(logits=l)]"
                    " - sum(KL(Bernoulli(logits=l) || Bernoulli(0.5)), axis=-1)")
        return ("E[loglik(x, z), z ~ Categorical(logits=l)]"
                " - sum(KL(Categorical(logits=l) || Categorical(logits=m)), axis=-1)")

    def objective(self, estimator: str | EstimatorSpec, n: int, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """``loss(x)``: -ELBO averaged over the batch, from the compiled stochgrad expression."""

        def loglik(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            if self.capture is not None:
                self.capture.append(z.detach())
            return self.loglik(x, z)

        expr = sg.parse(self.text(), functions={"loglik": sg.UserFunction(loglik, name="loglik")})
        f = sg.compile(expr, backend="torch", n=n, seed=seed, estimators={"z": estimator},
                       backend_options={"dtype": DTYPE}, batch_axes=1, validate=False)
        m = torch.zeros(self.latents, self.classes, dtype=DTYPE)
        extra = {"m": m} if self.kind == "categorical" else {}
        return lambda x: -f(x=x, l=self.logits(x), **extra) / x.shape[0]

    def node(self) -> tuple[Any, int]:
        """The node's distribution and its joint states on one batch (for ``requires``; capped at
        2**63, far above any enumeration budget, so that no message prints a 6,000-digit number)."""
        base = 2 if self.kind == "bernoulli" else self.classes
        bits = self.latents * ref.BATCH * math.log2(base)
        return lookup(self.kind.capitalize()), (base ** (self.latents * ref.BATCH) if bits < 63 else 2 ** 63)


def hand_loo(model: Model, n: int, gen: torch.Generator, z: torch.Tensor | None = None
             ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The hand-written estimator, plain torch: score function with the per-image leave-one-out
    baseline over the n samples (Kool et al. 2019), the decoder's pathwise gradient, the KL in closed
    form.  ``z`` fixes the samples (to compare with stochgrad's for the same noise)."""

    def loss(x: torch.Tensor) -> torch.Tensor:
        lg = model.logits(x)
        zz = model.sample(lg.detach(), n, gen) if z is None else z
        f = model.loglik(x, zz)  # (n, B)
        logq = model.log_q(lg, zz)
        fd = f.detach()
        baseline = (fd.sum(0, keepdim=True) - fd) / (n - 1)
        expected = f + (fd - baseline) * (logq - logq.detach())
        return (model.kl(lg) - expected.mean(0)).mean()

    return loss


def candidates(model: Model, names: Sequence[str] | None) -> list[tuple[str, EstimatorSpec | None, str]]:
    """(label, spec or None, refusal) for the requested estimators, or the registry's applicable ones."""
    d, states = model.node()
    if not names:
        specs = [s for s in applicable(d, states=states) if s.scores or s.through_sample]
        return [(s.name, s, "") for s in specs]
    out: list[tuple[str, EstimatorSpec | None, str]] = []
    for name in names:
        try:
            spec = relax_spec(model, name) if name.split(":")[0] == "relax" else as_spec(name, "z")
            spec.requires(d, states=states)
        except StochgradError as e:
            out.append((name, None, str(e)))
            continue
        out.append((name, spec, ""))
    return out


def relax_spec(model: Model, name: str) -> EstimatorSpec:
    """``relax`` or ``relax:hidden=H``: sg.Relax with a small row-wise torch net ``c_phi`` (one value per
    sample and image, from that image's relaxed logits: latents -> H ReLU -> 1; H = 32 by default),
    the REBAR term and learned temperature/scale; its parameters are trained with the model's
    (``spec.control_parameters()``, by the variance gradient)."""
    opts = dict(kv.split("=") for kv in name.split(":", 1)[1].split(",")) if ":" in name else {}
    width = int(opts.pop("hidden", 32))
    if opts:
        raise StochgradError(f"relax: unknown bench options {sorted(opts)} (the bench takes relax:hidden=H)")
    torch.manual_seed(1)
    inputs = model.latents * model.classes
    net = torch.nn.Sequential(torch.nn.Flatten(2), torch.nn.Linear(inputs, width), torch.nn.ReLU(),
                              torch.nn.Linear(width, 1), torch.nn.Flatten(1)).to(DTYPE)
    return sg.Relax(surrogate=net)


def encoder_variance(model: Model, loss: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, draws: int) -> float:
    """Sum over encoder parameters of the variance of their gradient, over ``draws`` independent draws."""
    grads = []
    for _ in range(draws):
        enc = list(model.enc.parameters())
        g = torch.autograd.grad(loss(x), enc)
        grads.append(torch.cat([t.reshape(-1) for t in g]))
    return float(torch.stack(grads).var(0).sum())


def load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def run_model(kind: str, args: argparse.Namespace, data: tuple[torch.Tensor, torch.Tensor]) -> list[dict[str, Any]]:
    train, test = data
    latents, classes = (args.latents, 1) if kind == "bernoulli" else args.groups
    x_fixed = train[:ref.BATCH]
    rows: list[dict[str, Any]] = []
    trainers: list[tuple[dict[str, Any], Model, ref.Trainer]] = []
    cap = args.steps * args.cap
    entries: list[tuple[str, EstimatorSpec | None, str]] = [(HAND, None, "")]
    entries += candidates(Model(kind, latents, classes, args.hidden, args.seed), args.estimators)
    for label, spec, refusal in entries:
        row: dict[str, Any] = {"model": kind, "estimator": label, "refused": refusal}
        rows.append(row)
        if refusal:
            continue
        model = Model(kind, latents, classes, args.hidden, args.seed)  # the same initial weights for all
        row["spec"], row["evals"] = spec, (1 if spec is None else spec.evaluations(None))
        try:
            row["variance"] = encoder_variance(model, _loss(model, spec, args.n, args.seed + 1), x_fixed, args.draws)
        except StochgradError as e:  # refused when the program runs (e.g. REBAR under batch_axes)
            row["refused"] = f"{type(e).__name__}: {e}"
            continue
        control = spec.control_parameters() if spec is not None and hasattr(spec, "control_parameters") else []
        trainers.append((row, model, ref.Trainer(_loss(model, spec, args.n, args.seed), model.params() + control,
                                                 train, cap, args.seed)))
    # interleaved training rounds
    for row, _, _ in trainers:
        row.update(seconds=0.0, ms=[], ratios=[])
    rnd = 0
    while True:
        active = [t for t in trainers if not _done(t, args)]
        if not active:
            break
        order = active[rnd % len(active):] + active[:rnd % len(active)]
        ms: dict[int, float] = {}
        for row, model, trainer in order:
            taken, seconds = trainer.run(args.block)
            row["seconds"] += seconds
            ms[id(row)] = 1e3 * seconds / max(taken, 1)
            row["ms"].append(ms[id(row)])
            if trainer.step == args.steps:
                row["at_steps"] = model.neg_elbo(test, args.eval_n)
                if row["spec"] is None:  # the hand-written LOO's weights after the step budget
                    trained = [{k: v.clone() for k, v in m.state_dict().items()} for m in (model.enc, model.dec)]
            if "at_wall" not in row and row["seconds"] >= args.wall:
                row["at_wall"] = model.neg_elbo(test, args.eval_n) + (trainer.step, row["seconds"])
            if trainer.done and "at_wall" not in row:
                row["at_wall"] = (math.nan, math.nan, trainer.step, row["seconds"])
        hand = trainers[0][0]
        if id(hand) in ms:
            for row, _, _ in order:
                row["ratios"].append(ms[id(row)] / ms[id(hand)])
        rnd += 1
    for row, _, _ in trainers:
        row["ms_step"] = statistics.median(row["ms"])
        row["ratio"] = statistics.median(row["ratios"]) if row["ratios"] else math.nan
        model = Model(kind, latents, classes, args.hidden, args.seed)
        model.enc.load_state_dict(trained[0])
        model.dec.load_state_dict(trained[1])
        row["var_trained"] = encoder_variance(model, _loss(model, row["spec"], args.n, args.seed + 2), x_fixed,
                                              args.draws)
    for key in ("variance", "var_trained"):
        for row in rows:
            if key in row:
                row[key + "_ratio"] = row[key] / rows[0][key]
    return rows


def _loss(model: Model, spec: EstimatorSpec | None, n: int, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The training loss of the hand-written LOO (spec None) or of stochgrad with ``spec``."""
    if spec is None:
        return hand_loo(model, n, torch.Generator().manual_seed(seed))
    return model.objective(spec, n, seed)


def _done(t: tuple[dict[str, Any], Model, ref.Trainer], args: argparse.Namespace) -> bool:
    row, _, trainer = t
    return trainer.done or (trainer.step >= args.steps and "at_wall" in row)


def report(rows: list[dict[str, Any]], args: argparse.Namespace, out: Callable[[str], None] = print) -> None:
    at_steps, at_wall = f"-ELBO@{args.steps}", f"-ELBO@{args.wall:g}s"
    head = (f"{'estimator':<24}{'evals':>6}{'var@init':>10}{'x LOO':>7}{'var@trained':>12}{'x LOO':>7}{'ms/step':>9}"
            f"{'x hand':>8}{at_steps:>15}{at_wall:>15}{'steps':>7}")
    out(head)
    out("-" * len(head))
    for r in rows:
        if r["refused"]:
            out(f"{r['estimator']:<24}refused: {r['refused']}")
            continue
        s, w = r.get("at_steps", (math.nan, math.nan)), r["at_wall"]
        out(f"{r['estimator']:<24}{r['evals']:>6}{r['variance']:>10.4g}{r['variance_ratio']:>7.2f}"
            f"{r['var_trained']:>12.4g}{r['var_trained_ratio']:>7.2f}{r['ms_step']:>9.2f}"
            f"{r['ratio']:>7.2f}x{s[0]:>9.2f} ± {s[1]:.2f}{w[0]:>9.2f} ± {w[1]:.2f}{w[2]:>7d}")
    out("var: encoder gradient variance summed over encoder parameters, on one fixed batch, at the initial"
        f" weights and at the hand LOO's weights after {args.steps} steps; x LOO: / the hand LOO's;"
        " x hand: median per-round ratio of ms/step; -ELBO: nats per test image ± MC standard error")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["bernoulli", "categorical"], choices=["bernoulli", "categorical"])
    ap.add_argument("--estimators", nargs="*", default=None,
                    help=f"override strings (default: the registry's applicable ones; registered: {', '.join(ESTIMATORS)})")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--n", type=int, default=2, help="samples per image for every estimator (default 2)")
    ap.add_argument("--steps", type=int, default=2000, help="fixed step budget (default 2000)")
    ap.add_argument("--wall", type=float, default=15.0, help="fixed training seconds budget (default 15)")
    ap.add_argument("--cap", type=int, default=10, help="at most cap x steps steps while reaching --wall")
    ap.add_argument("--block", type=int, default=50, help="steps per interleaved round (divides --steps)")
    ap.add_argument("--draws", type=int, default=200, help="independent gradients for the variance")
    ap.add_argument("--eval-n", type=int, default=ref.N_EVAL, help="samples per test image for the -ELBO")
    ap.add_argument("--latents", type=int, default=200, help="Bernoulli latents (default 200)")
    ap.add_argument("--groups", type=int, nargs=2, default=[20, 10], metavar=("G", "C"),
                    help="categorical latents and classes (default 20 10)")
    ap.add_argument("--hidden", type=int, default=0, help="hidden ReLU layer width (0: linear, default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny sizes and budgets (a smoke run)")
    args = ap.parse_args(argv)
    if args.quick:
        args.latents, args.groups, args.steps, args.wall, args.block = 12, [3, 4], 6, 0.005, 3
        args.draws, args.eval_n, args.cap = 6, 4, 2
    if args.steps % args.block:
        ap.error(f"--block {args.block} must divide --steps {args.steps}")
    if args.n < 2:
        ap.error("--n must be at least 2 (the leave-one-out baseline)")
    return args


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> dict[tuple[str, int], list]:
    args = parse_args(argv)
    data = ref.load_data(DTYPE)
    cmd = "python benchmarks/bench_estimators.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out(f"$ {cmd}")
    out(f"torch {torch.__version__}, {os.cpu_count()} CPUs; n = {args.n} samples per image, batch {ref.BATCH},"
        f" Adam lr {ref.LR}, {'linear' if not args.hidden else f'{args.hidden}-unit hidden layer'} encoder/decoder,"
        f" variances over {args.draws} draws, test -ELBO with {args.eval_n} samples per image")
    results = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        for kind in args.models:
            out(f"\n== {kind}, {threads} torch thread(s); before: {load()}")
            start = time.perf_counter()
            rows = run_model(kind, args, data)
            out(f"   after {time.perf_counter() - start:.0f} s: {load()}")
            report(rows, args, out)
            results[(kind, threads)] = rows
    return results


if __name__ == "__main__":
    main()
