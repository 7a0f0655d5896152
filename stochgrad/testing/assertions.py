"""Statistical assertions that decide with the estimator's own standard error.

A Monte Carlo estimate ``m`` of an exact quantity ``x`` with standard error
``s`` passes when ``|m - x| <= z * s`` (plus a tiny floating-point slack).  The
threshold ``z`` is chosen from a stated false-failure rate ``alpha`` for the
whole assertion, split over its ``k`` compared entries (Bonferroni):
``z = Phi^{-1}(1 - alpha / (2k))``; alpha = 1e-6 over one entry gives z = 4.89.
By the central limit theorem the false-failure rate is about ``alpha`` once n
is large enough for the estimate to be near-normal.
"""

from __future__ import annotations

from collections.abc import Mapping
from statistics import NormalDist
from typing import Any

import numpy as np

DEFAULT_ALPHA = 1e-6


def z_threshold(alpha: float = DEFAULT_ALPHA, comparisons: int = 1) -> float:
    """Two-sided z threshold for family-wise false-failure rate ``alpha`` over ``comparisons``."""
    if not 0 < alpha < 1 or comparisons < 1:
        raise ValueError("need 0 < alpha < 1 and comparisons >= 1")
    return NormalDist().inv_cdf(1 - alpha / (2 * comparisons))


def assert_within_stderr(
    estimate: Any,
    exact: Any,
    stderr: Any,
    *,
    alpha: float = DEFAULT_ALPHA,
    comparisons: int | None = None,
    atol: float = 1e-9,
    name: str = "estimate",
) -> None:
    """Assert ``|estimate - exact| <= z * stderr + atol * (1 + |exact|)`` elementwise."""
    m, x, s = (np.asarray(v, dtype=float) for v in (estimate, exact, stderr))
    m, x, s = np.broadcast_arrays(m, x, s)
    if not np.all(np.isfinite(m)):
        raise AssertionError(f"{name}: estimate is not finite: {m}")
    k = comparisons if comparisons is not None else max(1, m.size)
    z = z_threshold(alpha, k)
    tol = z * s + atol * (1 + np.abs(x))
    bad = ~(np.abs(m - x) <= tol)
    if np.any(bad):
        zscores = np.abs(m - x) / np.where(s > 0, s, np.nan)
        raise AssertionError(
            f"{name}: {m[bad]} differs from exact {x[bad]} by {np.abs(m - x)[bad]}, "
            f"more than {z:.2f} standard errors ({s[bad]}); |z| = {zscores[bad]}"
        )


def assert_estimate(
    result: Any,
    *,
    value: Any = None,
    grad: Mapping[str, Any] | None = None,
    alpha: float = DEFAULT_ALPHA,
) -> None:
    """Check a :class:`stochgrad.Estimate` against exact values and/or gradients.

    The false-failure rate ``alpha`` is shared by all entries compared.

    Args:
        result: the :class:`~stochgrad.run.Estimate` to check.
        value: the exact value (``None``: not checked).
        grad: exact gradients by parameter name (a subset is fine).
        alpha: family-wise probability of failing when the estimate is right.

    Raises:
        AssertionError: an entry is further than ``z_threshold(alpha, k)`` standard errors from its exact value."""
    checks: list[tuple[str, Any, Any, Any]] = []
    if value is not None:
        checks.append(("value", result.value, value, result.value_stderr))
    for k, g in (grad or {}).items():
        checks.append((f"d/d{k}", result.grad[k], g, result.stderr[k]))
    total = sum(max(1, np.size(np.broadcast_arrays(np.asarray(c[1]), np.asarray(c[2]))[0])) for c in checks)
    for name, est, exact, se in checks:
        assert_within_stderr(est, exact, se, alpha=alpha, comparisons=total, name=name)


def assert_unbiased(
    expr: Any,
    params: Mapping[str, Any],
    *,
    exact_value: Any = None,
    exact_grad: Mapping[str, Any] | None = None,
    n: int = 20_000,
    seed: int = 0,
    alpha: float = DEFAULT_ALPHA,
    **estimate_options: Any,
) -> Any:
    """Estimate ``expr`` at ``params`` and z-test it against exact values; returns the estimate.

    ``estimate_options`` go to :func:`stochgrad.estimate` (``backend``, ``estimators``, ...).

    Args:
        expr: DSL text or an expression.
        params: parameter values.
        exact_value: the exact value (``None``: not checked).
        exact_grad: exact gradients by parameter name.
        n: number of samples.
        seed: the seed of the estimate.
        alpha: family-wise false-failure rate.
        **estimate_options: passed to :func:`stochgrad.estimate`.

    Returns:
        The :class:`~stochgrad.run.Estimate` that was tested.

    Raises:
        AssertionError: the estimate is inconsistent with the exact values."""
    from ..api import estimate

    result = estimate(expr, params, n=n, seed=seed, **estimate_options)
    assert_estimate(result, value=exact_value, grad=exact_grad, alpha=alpha)
    return result


def check_pathwise(
    dist: str,
    params: Mapping[str, Any],
    *,
    costs: tuple[str, ...] = ("z", "sin(z)", "exp(-z**2)"),
    n: int = 100_000,
    seed: int = 0,
    alpha: float = DEFAULT_ALPHA,
    rtol: float = 1e-3,
    **estimate_options: Any,
) -> None:
    """Check a distribution's claimed pathwise sampler, two ways, on a few costs.

    1. Finite differences of the expectation: with the same noise (same seed), the estimate of
       ``E[cost]`` at ``phi +- h`` is a smooth function of ``phi`` if the sampler is a
       differentiable ``z = g_phi(eps)`` with noise free of ``phi``; its central difference must
       match the pathwise gradient to ``rtol`` (catches a stop-gradient inside the sampler, a wrong
       hand-written derivative, noise that moves with ``phi``).
    2. The score function: the pathwise gradient and the score-function gradient (which uses only
       ``log_prob``) are estimated from independent noise; both are unbiased if the sampler draws
       from the density ``log_prob`` describes, so their difference is z-tested against
       ``sqrt(se_1^2 + se_2^2)`` (catches a sampler of the wrong law, e.g. a wrong inverse CDF).

    Together they catch the bug class where a distribution claims a reparameterization it does not
    have and gradients come out silently wrong.  Check 1 is skipped for implicitly
    reparameterized distributions (Gamma, Beta, Dirichlet): their draws come from rejection
    samplers whose noise use changes with the parameters, so the same seed is not the same path.  ``dist`` is DSL text such as
    ``"Weibull(lam, k)"``; the sampled variable is ``z``; parameters are scalars.

    Args:
        dist: the distribution as DSL text (``"Weibull(lam, k)"``).
        params: scalar parameter values.
        costs: the costs of ``z`` tested.
        n: samples per estimate.
        seed: the seed.
        alpha: family-wise false-failure rate of the z-tests.
        rtol: relative tolerance of the finite-difference check.
        **estimate_options: passed to :func:`stochgrad.estimate`.

    Raises:
        AssertionError: a check fails, naming the cost and the parameter."""
    from ..api import as_expression, estimate
    from ..distributions import lookup

    node = as_expression(f"E[z, z ~ {dist}]")
    same_noise_path = "implicit_reparam" not in lookup(node.bindings[0].dist.name).needs  # type: ignore[attr-defined]
    checks = []
    for cost in costs:
        text = f"E[{cost}, z ~ {dist}]"
        a = estimate(text, params, n=n, seed=seed, estimators={"z": "pathwise"}, **estimate_options)
        b = estimate(text, params, n=n, seed=seed + 1, estimators={"z": "score"}, **estimate_options)
        for k in a.grad:
            checks.append((f"{text}: d/d{k}", a.grad[k], b.grad[k], np.hypot(a.stderr[k], b.stderr[k])))
            if not same_noise_path:
                continue
            h = 1e-5 * max(1.0, abs(float(params[k])))
            up, down = ({**params, k: float(params[k]) + s} for s in (h, -h))
            fd = (
                estimate(text, up, n=n, seed=seed, estimators={"z": "pathwise"}, **estimate_options).value
                - estimate(text, down, n=n, seed=seed, estimators={"z": "pathwise"}, **estimate_options).value
            ) / (2 * h)
            if not abs(fd - a.grad[k]) <= rtol * (np.abs(a.grad[k]) + a.stderr[k]) + 1e-9:
                raise AssertionError(
                    f"{text}: d/d{k}: pathwise gradient {a.grad[k]:.6g} but finite differences of"
                    f" the same-noise expectation give {fd:.6g}"
                )
    total = sum(max(1, np.size(c[1])) for c in checks)
    for name, pathwise, score, se in checks:
        assert_within_stderr(
            pathwise, score, se, alpha=alpha, comparisons=total, name=f"{name} (pathwise vs score function)"
        )
