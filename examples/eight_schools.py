"""Eight schools (Rubin 1981; Gelman et al., BDA3 section 5.5) by variational inference, in pure DSL.

Model (non-centred):  mu ~ Normal(0, 5),  tau ~ HalfCauchy(5),  theta_tilde_j ~ Normal(0, 1),
y_j ~ Normal(mu + tau * theta_tilde_j, sigma_j) for the eight schools j (sigma_j known).

Guide: mean-field Normal on (mu, log tau, theta_tilde), each with its own location and scale
``exp(r)``.  With ``u = log tau`` the prior's density picks up the Jacobian ``+ u``.  The ELBO is
one stochgrad expression of log-densities (no KL formula, no user function), with the observations
gathered by the school index (``theta_tilde[school]``), so the same text runs on every backend:

    E[sum(log_prob(Normal(mu + exp(u) * tt[school], sigma), y))
      + log_prob(Normal(0, 5), mu) + log_prob(HalfCauchy(5), exp(u)) + u + sum(log_prob(Normal(0, 1), tt))
      - log_prob(Normal(m_mu, exp(r_mu)), mu) - log_prob(Normal(m_u, exp(r_u)), u)
      - sum(log_prob(Normal(m_t, exp(r_t)), tt)),
      mu ~ Normal(m_mu, exp(r_mu)), u ~ Normal(m_u, exp(r_u)), tt ~ Normal(m_t, exp(r_t))]

Adam (in numpy) ascends stochgrad's pathwise gradient estimates, so the backend is a flag:

    python examples/eight_schools.py --backend torch      # or autograd (the default); same digits

Prints the ELBO (with its standard error) as it climbs towards the log evidence, log p(y) =
-31.31, from a double integral with scipy in ``tests/test_examples_models.py``.
"""

import argparse

import numpy as np

import stochgrad as sg

Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
SCHOOL = np.arange(8)

ELBO = """E[sum(log_prob(Normal(mu + exp(u) * tt[school], sigma), y))
  + log_prob(Normal(0, 5), mu) + log_prob(HalfCauchy(5), exp(u)) + u + sum(log_prob(Normal(0, 1), tt))
  - log_prob(Normal(m_mu, exp(r_mu)), mu) - log_prob(Normal(m_u, exp(r_u)), u)
  - sum(log_prob(Normal(m_t, exp(r_t)), tt)),
  mu ~ Normal(m_mu, exp(r_mu)), u ~ Normal(m_u, exp(r_u)), tt ~ Normal(m_t, exp(r_t))]"""

VARIATIONAL = ("m_mu", "r_mu", "m_u", "r_u", "m_t", "r_t")


def initial() -> dict[str, np.ndarray]:
    return {"m_mu": np.array(0.0), "r_mu": np.array(0.0), "m_u": np.array(0.0), "r_u": np.array(0.0),
            "m_t": np.zeros(8), "r_t": np.zeros(8)}


def fit(backend: str = "autograd", iters: int = 1500, n: int = 16, lr: float = 0.05, seed: int = 0,
        report: int = 0) -> tuple[dict[str, np.ndarray], sg.Estimate]:
    """Maximize the ELBO by Adam on stochgrad's gradient estimates; return the variational
    parameters and a final 20,000-sample estimate of the ELBO."""
    data = {"y": Y, "sigma": SIGMA, "school": SCHOOL}
    theta = initial()
    plan = sg.plan(ELBO, {**data, **theta}, backend=backend)
    m = {k: np.zeros_like(v) for k, v in theta.items()}
    v = {k: np.zeros_like(v) for k, v in theta.items()}
    b1, b2 = 0.9, 0.999
    for it in range(1, iters + 1):
        est = plan.estimate({**data, **theta}, n=n, seed=seed * 1_000_003 + it, wrt=VARIATIONAL)
        for k in VARIATIONAL:
            g = np.asarray(est.grad[k])
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            theta[k] = theta[k] + lr * (m[k] / (1 - b1**it)) / (np.sqrt(v[k] / (1 - b2**it)) + 1e-8)
        if report and (it % report == 0 or it == iters):
            print(f"iter {it:5d}  ELBO {est.value: .2f} (n={n})", flush=True)
    final = plan.estimate({**data, **theta}, n=20_000, seed=12345, wrt=VARIATIONAL)
    return theta, final


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="autograd", choices=("autograd", "torch"))
    ap.add_argument("--iters", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(sg.plan(ELBO, {"y": Y, "sigma": SIGMA, "school": SCHOOL, **initial()}, backend=args.backend))
    theta, final = fit(args.backend, args.iters, seed=args.seed, report=max(1, args.iters // 5))
    print(f"ELBO {final.value:.3f} +- {final.value_stderr:.3f}   (log evidence -31.31)")
    print(f"q(mu) = Normal({theta['m_mu']:.2f}, {np.exp(theta['r_mu']):.2f}),"
          f"  q(log tau) = Normal({theta['m_u']:.2f}, {np.exp(theta['r_u']):.2f})")
    effects = theta["m_mu"] + np.exp(theta["m_u"]) * theta["m_t"]
    print("school effects (at the guide's means):", " ".join(f"{e:.1f}" for e in effects))


if __name__ == "__main__":
    main()
