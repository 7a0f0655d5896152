"""Bayesian logistic regression by variational inference, with stochgrad on autograd.

Data: scikit-learn's bundled breast cancer set (569 tumours, 30 features, no download), features
standardized with the training statistics, a fixed stratified seed-0 split of 426 training and 143
test cases; a constant column adds an intercept, so w has D = 31 entries.

Model: w ~ Normal(0, 1) entrywise, y_i ~ Bernoulli(sigmoid(x_i . w)).  Variational posterior
q(w) = Normal(m, s) entrywise, with s = exp(log_s).  The ELBO is one stochgrad expression,

    E[sum(log_prob(Bernoulli(logits=X @ w), y)), w ~ Normal(m, s)] - sum(KL(Normal(m, s) || Normal(0, 1)))

in pure DSL (no user function: ``X @ w`` is numpy's matmul over the non-sample axes, (N, D) @ (D,)
giving the N logits of each sample of w, and ``log_prob`` the Bernoulli log mass), with the
pathwise estimator for w and the closed-form KL.  ``sg.compile(..., backend="autograd")`` makes it an
autograd function of m and s; ``autograd.misc.optimizers.adam`` maximizes it.

Prints the ELBO (estimated with 1,000 samples of w, the same noise each time) every so often and,
at the end, the test accuracy of the posterior mean's predictions.

    python examples/bayesian_logreg_autograd.py [--iters 1000]
"""

import argparse
import time

import autograd
import autograd.numpy as anp
import numpy as np
from autograd.misc.optimizers import adam
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

import stochgrad as sg

ELBO = "E[sum(log_prob(Bernoulli(logits=X @ w), y)), w ~ Normal(m, s)] - sum(KL(Normal(m, s) || Normal(0, 1)))"


def load(seed: int = 0):
    data = load_breast_cancer()
    X_train, X_test, y_train, y_test = train_test_split(data.data, data.target.astype(float), test_size=0.25,
                                                        random_state=seed, stratify=data.target)
    mean, std = X_train.mean(0), X_train.std(0)
    add_bias = lambda X: np.hstack([(X - mean) / std, np.ones((X.shape[0], 1))])  # noqa: E731
    return add_bias(X_train), y_train, add_bias(X_test), y_test


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("-n", type=int, default=8, help="samples of w per gradient step")
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    X, y, X_test, y_test = load()
    N, D = X.shape
    expr = sg.parse(ELBO)
    elbo = sg.compile(expr, backend="autograd", n=args.n, seed=args.seed)
    print(f"train {X.shape}, test {X_test.shape}")
    print(elbo.plan(X=X.shape, y=y.shape, m=(D,), s=(D,)))

    def objective(params, it):  # -ELBO per training case
        return -elbo(X=X, y=y, m=params["m"], s=anp.exp(params["log_s"])) / N

    def report_elbo(params) -> float:  # a fresh objective with a fixed seed: the same noise every time
        f = sg.compile(expr, backend="autograd", n=1000, seed=12345)
        return float(f(X=X, y=y, m=params["m"], s=np.exp(params["log_s"])))

    every = max(1, args.iters // 10)

    def callback(params, it, g):
        if (it + 1) % every == 0 or it + 1 == args.iters:
            print(f"iter {it + 1:5d}  ELBO {report_elbo(params):10.3f}  ({time.perf_counter() - start:.1f}s)",
                  flush=True)

    init = {"m": np.zeros(D), "log_s": np.full(D, -2.0)}
    print(f"iter {0:5d}  ELBO {report_elbo(init):10.3f}")
    start = time.perf_counter()
    params = adam(autograd.grad(objective), init, callback=callback, num_iters=args.iters, step_size=args.lr)

    m, s = params["m"], np.exp(params["log_s"])
    accuracy = np.mean((X_test @ m > 0) == (y_test == 1))
    print(f"posterior std: median {np.median(s[:-1]):.3f}, range [{s.min():.3f}, {s.max():.3f}]")
    print(f"test accuracy (posterior mean): {accuracy:.4f}")


if __name__ == "__main__":
    main()
