"""Antithetic noise for the pathwise and score estimators (``"pathwise:antithetic=true"``,
``"score:antithetic=true"``, ``sg.Pathwise(antithetic=True)``, ``sg.Score(antithetic=True)``).

Hammersley & Morton 1956, "A new Monte Carlo technique: antithetic variates"; Owen 2013, "Monte
Carlo theory, methods and examples", section 8.2; the base of ARM/DisARM (:mod:`.disarm`).

The sample axis of ``n`` samples holds ``m = n // 2`` pairs ``(i, i + m)`` whose base noise is
reflected: sample ``i + m`` takes ``-eps_i`` for standard normal noise and ``1 - u_i`` for uniform
noise; with ``n`` odd the last sample is unpaired (its own noise).  The reflection is applied to
every draw of the node (every noise stream), inside each enumeration copy, by the node's step
(:mod:`stochgrad.program.nodes`, through :attr:`EstimatorSpec.reflects`):

* **Unbiased** for every cost: ``-eps ~ eps`` and ``1 - u ~ u`` (jointly over all streams of the
  node), so each sample has exactly the node's law and the mean over the sample axis has the
  expectation of a single sample, for the value and for each estimator's gradient.
* **Variance**: for a pair, ``Var((g(eps) + g(-eps)) / 2) = (Var g + Cov(g(eps), g(-eps))) / 2``,
  lower than two independent samples' ``Var g / 2`` exactly when the covariance is negative --
  always for a monotone ``g`` of the noise; **higher** (up to twice) for a ``g`` even around the
  reflection point (``g(eps) = g(-eps)``: each pair is one sample twice).  ``g`` is the per-sample
  integrand of each output: the cost for the value, each per-sample gradient for a derivative.
  So ``exp(z)`` on a Normal gains everywhere (ratio ``1 - exp(-sigma^2)`` for the value and
  ``d/dmu``), ``z**2`` at ``mu = 0`` doubles the value's variance while its pathwise ``d/dmu = 2 z``
  becomes exact, and ``z**3``'s value gains while its pathwise ``d/dmu = 3 z**2`` may lose.  For a
  Bernoulli score node the partners are negatively correlated (``b = 1[u < p]``, ``1[1 - u < p]``),
  so a scalar Bernoulli with a mean baseline gains for every ``p`` (exact ratios: 0.95 at
  ``p = 0.05``, 0.57 at 0.3, 0.18 at 0.45; tests/test_antithetic.py).
* Standard errors count pairs (:attr:`paired`, :func:`stochgrad.run.pair_units`): partners are
  dependent, pairs are independent.
* Laws: those whose samplers draw only ``normal`` or ``uniform`` noise -- Normal, LogNormal,
  MultivariateNormal, HalfNormal, the inverse-CDF laws (Uniform, Exponential, Weibull, Laplace,
  Gumbel, Logistic, Cauchy, HalfCauchy, Kumaraswamy), Bernoulli, Categorical, Geometric, VonMises
  (its rejection rounds reflect every uniform).  A sampler that draws ``gamma``, ``poisson`` or
  ``binomial`` noise (Gamma, Beta, Dirichlet, StudentT, Chi2, InverseGamma, Poisson, Binomial) has
  no such reflection: refused by name when the node draws it (:func:`reflect`).
* Score's leave-one-out baseline (:func:`leave_pair_out`): sample ``i``'s baseline is the mean cost
  of every sample but ``i`` *and its partner*: the partner's cost is a function of ``i``'s own noise,
  so ``E[f(z_i') grad log q(z_i)] != 0`` in general and plain leave-one-out would be biased; the
  other pairs are independent of ``z_i``, so ``E[b_i grad log q(z_i)] = E[b_i] E[grad log q] = 0``.
  (Leave-one-*pair*-out over the pair means is the same baseline.)
* Derivative orders: those of the underlying estimator (every order for both): the reflection only
  changes which noise each sample sees, not the surrogate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import PlanError

if TYPE_CHECKING:
    from ..backend import Backend
    from ..types import Array

#: the noise kinds with a measure-preserving reflection, and the reflection
REFLECTIONS = {"normal": "-eps", "uniform": "1 - u"}


class Antithetic:
    """For a spec with an ``antithetic`` field (pathwise, score, delta): with it set, the sample axis
    holds pairs ``(i, i + n // 2)`` (``paired``: standard errors count pairs) whose noise is reflected
    (``reflects``: the node step reflects the draws)."""

    antithetic: bool

    @property
    def paired(self) -> bool:
        return self.antithetic

    @property
    def reflects(self) -> bool:
        return self.antithetic


def flag(value: Any, estimator: str) -> bool:
    """The ``antithetic`` option as a bool: True/False, 1/0, or the text true/false (``as_spec``
    gives option text as is); anything else is refused by name."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise PlanError(f"{estimator}: option antithetic must be true or false, got {value!r}")


def reflect(B: Backend, kind: str, x: Array, var: str) -> Array:
    """``x`` (``n`` draws of ``kind`` noise on the sample axis, one enumeration copy) with rows
    ``m .. 2m - 1`` replaced by the reflection of rows ``0 .. m - 1``, ``m = n // 2`` (an odd last
    row kept); a noise kind without a reflection is refused, naming the node."""
    if kind not in REFLECTIONS:
        raise PlanError(
            f"antithetic noise on {var}: its sampler draws {kind} noise, which has no reflection;"
            f" antithetic applies to laws sampled from {' or '.join(REFLECTIONS)} noise only (e.g. Normal,"
            " LogNormal, the inverse-CDF laws, Bernoulli, Categorical); drop antithetic=true for this node"
        )
    m = B.shape(x)[0] // 2
    if m == 0:
        return x
    half = x[:m]
    return B.concat([half, -half if kind == "normal" else 1.0 - half, x[2 * m :]])


def partners(B: Backend, x: Array, count: int) -> Array:
    """Each row's partner's value: ``i <-> i + m`` within each copy of ``count`` rows (``m = count
    // 2``); an odd count's last row gets 0 (no partner)."""
    n = B.shape(x)[0]
    m = count // 2
    parts = []
    for r in range(n // count):  # one piece per enumeration copy (copies are few), not per sample
        own = x[r * count : (r + 1) * count]
        parts += [own[m : 2 * m], own[:m]] + ([own[2 * m :] * 0.0] if count % 2 else [])
    return parts[0] if len(parts) == 1 else B.concat(parts)


def leave_pair_out(B: Backend, cost: Array, count: int) -> Array | None:
    """Per-row mean of the costs of every *other pair* (gradient-free): ``(T - f_i - f_i') / (N - 2)``
    for a paired row, ``(T - f_i) / (N - 1)`` for an odd count's unpaired last row (``T``: the total
    over all ``N`` rows, every enumeration copy; see the module docstring).  None (no baseline)
    with a single pair."""
    c = B.stop_gradient(cost)
    n = B.shape(c)[0]
    if n - 2 < 1 or count < 2:
        return None
    total = B.sum(c, (0,))
    total = B.reshape(total, (1,) + B.shape(total))
    partner = partners(B, c, count)
    if not count % 2:
        return (total - c - partner) / (n - 2)
    m, parts = count // 2, []
    for r in range(n // count):  # the unpaired last row of each copy leaves out itself only
        own = (total - c - partner)[r * count : (r + 1) * count]
        parts += [own[: 2 * m] / (n - 2), own[2 * m :] / (n - 1)]
    return B.concat(parts)
