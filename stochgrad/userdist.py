"""User-defined distributions: a sampler and a log density, registered by name, no subclassing.

    policy = sg.UserDistribution("Policy", params=("W",), sample=generate, log_prob=seq_logp,
                                 value_shape=lambda shapes: (T,), discrete=True)
    sg.register_distribution(policy)
    sg.estimate("E[reward(y), y ~ Policy(W)]", {"W": W0}, n=256, functions={...})

The maths is the estimator's, not this module's.  By default the node gets the score function
(REINFORCE, Williams 1992), ``grad E[f(z)] = E[f(z) grad log q_phi(z)]`` with ``z`` held fixed,
which needs only a sampler and ``log q`` -- the policy-gradient setting of sequence models, with the
leave-one-out baseline of Kool et al. (2019) (RLOO; GRPO's group baseline is the same idea).  A law
declared ``pathwise=True`` has a sampler ``z = g_phi(eps)`` differentiable in ``phi`` with noise
``eps`` independent of ``phi`` (Kingma & Welling 2014), and the planner may differentiate through
it.  Exact enumeration is offered only when a finite ``support`` is declared.

**The contract** (``rows`` below is the size of the leading sample axis):

* ``sample(params, noise) -> z``.  ``params`` maps the parameter names to native arrays with a
  leading sample axis of size 1 (the same for every sample) or ``rows`` (row ``i`` belongs to sample
  ``i``: ``estimate`` gives each sample its own copy of a parameter, for per-sample gradients).
  As for every distribution they arrive aligned to a common rank (numpy-style unit axes inserted
  after the sample axis), unless ``ranks`` declares a parameter's logical rank: then it arrives
  with exactly that many axes after the sample axis, and ``value_shape`` sees that shape.  All randomness
  must come from ``noise(kind, shape=None)``, which returns native ``"uniform"`` (strictly inside
  (0, 1)) or ``"normal"`` draws of shape ``(rows, *shape)`` from stochgrad's stream (``shape``
  defaults to ``noise.shape``, the logical shape of one sample); each call is a new stream, so
  seeds reproduce and a run split into chunks sees the same numbers -- provided sample ``i`` of
  ``z`` depends only on row ``i`` of the noise and parameters (no mixing across samples).  ``z`` is
  a native floating array of shape ``(rows, *noise.shape)`` (discrete values as floats: 0.0, 1.0,
  token ids), finite.
* ``log_prob(params, x) -> log q(x)``, differentiable in ``params`` (and in whatever it closes over:
  a module's weights), of shape ``(rows, *s)`` where ``s`` is a prefix of ``x``'s logical shape:
  one entry per element, per event (a sequence's log-probability, ``s = ()``), or per plate entry;
  stochgrad sums the rest.  On the node's own samples it must be finite.
* ``value_shape(shapes) -> tuple`` maps the parameters' logical shapes (by name) to that of one
  sample; by default numpy broadcasting of them (an elementwise law).
* ``support`` (discrete laws only, optional): the values one element takes, an array of shape
  ``(k, *event)`` (``event`` the last ``event_rank`` axes of the value shape) or a function of
  ``event`` giving one; it enables exact enumeration.

Every output is checked (:mod:`stochgrad.userfn`'s checks: native array of the backend's dtype,
leading axis, then shape and finiteness), and a violation -- or an exception inside a callable -- is a
:class:`~stochgrad.errors.StochgradError` naming the distribution and the callable.  The checks
of finiteness read one number back from the device per call; ``check=False`` skips them.

Registering (:func:`stochgrad.register_distribution`) refuses the name of a built-in distribution or
function; registering another :class:`UserDistribution` under a taken user name replaces it and
forgets the cached parses and plans (a compiled objective made before keeps its plan).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import ir
from .distributions import Constraint, Distribution, Draw, Param
from .errors import StochgradError, did_you_mean
from .types import Array
from .userdist_args import as_params, as_ranks, as_shape
from .userfn import call_user_function, describe

if TYPE_CHECKING:
    from .backend import Backend

#: kinds of base noise a user sampler may draw
NOISE_KINDS = ("uniform", "normal")


class Noise:
    """What a user sampler draws its randomness from: ``noise(kind, shape=None)`` gives native
    ``(rows, *shape)`` draws of ``kind`` (``"uniform"`` or ``"normal"``), a new stream per call;
    ``noise.shape`` is the logical shape of one sample; ``noise.rows`` the sample-axis size, known
    after the first draw."""

    __slots__ = ("_B", "_draw", "_name", "rows", "shape")

    def __init__(self, B: Backend, name: str, draw: Draw, shape: tuple[int, ...]) -> None:
        self._B, self._name, self._draw, self.shape = B, name, draw, tuple(shape)
        self.rows: int | None = None

    def __call__(self, kind: str, shape: Sequence[int] | None = None) -> Array:
        if kind not in NOISE_KINDS:
            raise StochgradError(
                f"distribution {self._name}: sample() asked noise({kind!r}): the kinds are"
                f" {', '.join(map(repr, NOISE_KINDS))}{did_you_mean(str(kind), NOISE_KINDS)}"
            )
        logical = self.shape if shape is None else as_shape(shape, f"distribution {self._name}: sample(): noise shape")
        out = self._draw(kind, logical)
        self.rows = self._B.shape(out)[0]
        return out


class UserDistribution(Distribution):
    """A distribution given by callables (see the module docstring for their contract).

    ``params``: parameter names, or :class:`~stochgrad.Param` objects, or a mapping name ->
    constraint (``"real"``, ``"positive"`` or a :class:`~stochgrad.distributions.Constraint`).
    ``discrete``: integer-valued (never pathwise).  ``pathwise``: ``sample`` is differentiable in the
    parameters (a reparameterization).  ``event_rank``: trailing value axes forming one event (1 for a
    sequence).  ``ranks``: the logical rank of some parameters (see the module docstring).
    ``fixed_support``: the support does not move with the parameters (else the score function is
    reported biased).  ``check``: check finiteness of samples and their log densities.
    Calling it on expressions builds a distribution node (the embedded form): ``policy(W)``."""

    user_defined = True

    def __init__(
        self,
        name: str,
        params: Sequence[str | Param] | Mapping[str, str | Constraint],
        *,
        sample: Callable[..., Any],
        log_prob: Callable[..., Any],
        value_shape: Callable[[dict[str, tuple[int, ...]]], Sequence[int]] | None = None,
        discrete: bool = False,
        pathwise: bool = False,
        support: Any = None,
        event_rank: int = 0,
        ranks: Mapping[str, int] | None = None,
        fixed_support: bool = True,
        check: bool = True,
        doc: str = "",
    ) -> None:
        try:
            ir.check_name(name)
        except StochgradError as exc:
            raise StochgradError(f"UserDistribution name: {exc}") from None
        self.name = name
        self.params = as_params(name, params)
        if not self.params:
            raise StochgradError(f"UserDistribution {name}: give at least one parameter")
        for what, fn in (("sample", sample), ("log_prob", log_prob)):
            if not callable(fn):
                raise StochgradError(f"UserDistribution {name}: {what} must be callable, got {describe(fn)}")
        if value_shape is not None and not callable(value_shape):
            raise StochgradError(f"UserDistribution {name}: value_shape must be callable, got {describe(value_shape)}")
        for flag, value in (
            ("discrete", discrete),
            ("pathwise", pathwise),
            ("fixed_support", fixed_support),
            ("check", check),
        ):
            if not isinstance(value, bool):
                raise StochgradError(f"UserDistribution {name}: {flag} must be True or False, got {value!r}")
        if discrete and pathwise:
            raise StochgradError(
                f"UserDistribution {name}: a discrete law has no pathwise derivative (its samples"
                " are integers); declare pathwise=False"
            )
        if support is not None and not discrete:
            raise StochgradError(
                f"UserDistribution {name}: a support (for exact enumeration) is for a discrete law;"
                " declare discrete=True"
            )
        if isinstance(event_rank, bool) or not isinstance(event_rank, int) or event_rank < 0:
            raise StochgradError(f"UserDistribution {name}: event_rank must be an integer >= 0, got {event_rank!r}")
        self._sample, self._log_prob, self._value_shape = sample, log_prob, value_shape
        self._ranks = as_ranks(name, [p.name for p in self.params], ranks)
        self._support = support
        self.discrete, self.reparameterized, self.fixed_support = discrete, pathwise, fixed_support
        self.event_rank, self.check = event_rank, check
        self.doc = doc or f"user-defined distribution {name}({', '.join(p.name for p in self.params)})"

    def __repr__(self) -> str:
        return f"UserDistribution({self.name!r}, params={tuple(p.name for p in self.params)!r})"

    def __call__(self, *args: Any, **kwargs: Any) -> ir.Dist:
        from .distributions import DISTRIBUTIONS, make_dist
        from .distscope import active, check_distributions, scoped

        registered = DISTRIBUTIONS.get(self.name) is self or active().get(self.name) is self
        with scoped({} if registered else check_distributions({self.name: self})):
            # an unregistered law builds its node by name: run it with distributions={name: law}
            return make_dist(
                self.name, tuple(ir.as_expr(a) for a in args), tuple((k, ir.as_expr(v)) for k, v in kwargs.items())
            )

    # -- shapes and supports -------------------------------------------------------------------

    def value_shape(self, shapes: Mapping[str, tuple[int, ...]], where: ir.Expr | None = None) -> tuple[int, ...]:
        shapes = {k: self._declared(k, tuple(s)) for k, s in shapes.items()}
        if self._value_shape is None:
            out = super().value_shape(shapes, where)
        else:
            try:
                given = self._value_shape(dict(shapes))
            except Exception as exc:
                raise StochgradError(
                    f"distribution {self.name}: value_shape() raised {type(exc).__name__}: {exc}"
                    f" (called on parameter shapes {dict(shapes)})"
                ) from exc
            out = as_shape(given, f"distribution {self.name}: value_shape() (given parameter shapes {dict(shapes)})")
        if len(out) < self.event_rank:
            raise StochgradError(
                f"distribution {self.name}: a sample of shape {out} has fewer axes than its"
                f" event_rank {self.event_rank}"
            )
        return out

    def element_support(self, event: tuple[int, ...], static: Mapping[str, float | None]) -> np.ndarray | None:
        if self._support is None:
            return None
        given = self._support
        if callable(given):
            try:
                given = given(tuple(event))
            except Exception as exc:
                raise StochgradError(
                    f"distribution {self.name}: support() raised {type(exc).__name__}: {exc}"
                    f" (called on event shape {tuple(event)})"
                ) from exc
        try:
            values = np.asarray(given, dtype=float)
        except (TypeError, ValueError):
            raise StochgradError(
                f"distribution {self.name}: its support must be an array of numbers, got {describe(given)}"
            ) from None
        if values.ndim != 1 + len(event) or tuple(values.shape[1:]) != tuple(event) or not len(values):
            raise StochgradError(
                f"distribution {self.name}: its support has shape {values.shape}; expected (k, *event)"
                f" = (k, {', '.join(map(str, event))}{',' * (len(event) == 1)}) with k >= 1 values"
                f" of one element (the last event_rank = {self.event_rank} axes of a sample)"
            )
        if not np.isfinite(values).all():
            raise StochgradError(f"distribution {self.name}: its support has a non-finite value")
        return values

    def _declared(self, name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        """A parameter's logical ``shape`` without the unit axes alignment put in front of a declared rank."""
        rank = self._ranks.get(name)
        if rank is None or len(shape) == rank:
            return shape
        if len(shape) < rank or any(s != 1 for s in shape[: len(shape) - rank]):
            raise StochgradError(
                f"distribution {self.name}: parameter {name!r} has shape {shape}, but its declared"
                f" rank is {rank} (ranks={dict(self._ranks)})"
            )
        return shape[len(shape) - rank :]

    def _params(self, B: Backend, p: Mapping[str, Array]) -> dict[str, Array]:
        """The parameters as the callables receive them: declared ranks restored."""
        out = dict(p)
        for name in self._ranks:
            shape = B.shape(out[name])
            logical = self._declared(name, tuple(shape[1:]))
            if len(logical) != len(shape) - 1:
                out[name] = B.reshape(out[name], (shape[0], *logical))
        return out

    def support(self, static: Mapping[str, float | None]) -> None:
        """No declared :class:`~stochgrad.supports.Support` (a KL with a user law is estimated by Monte Carlo)."""
        return None

    # -- sampling and densities ----------------------------------------------------------------

    def rsample(self, B: Backend, p: Mapping[str, Array], draw: Draw, shape: tuple[int, ...]) -> Array:
        if not self.reparameterized:
            raise StochgradError(
                f"{self.name} has no pathwise sampler (declare pathwise=True if sample() is"
                " differentiable in the parameters)"
            )
        return self._draw(B, p, draw, shape)

    def sample(self, B: Backend, p: Mapping[str, Array], draw: Draw, shape: tuple[int, ...]) -> Array:
        return B.stop_gradient(self._draw(B, p, draw, shape))

    def sample_and_log_prob(
        self, B: Backend, p: Mapping[str, Array], draw: Draw, shape: tuple[int, ...]
    ) -> tuple[Array, Array]:
        z = self.sample(B, p, draw, shape)
        logq = self.log_prob(B, p, z)
        if self.check:
            _check_finite(
                B,
                logq,
                f"distribution {self.name}: log_prob() of its own samples",
                "a sample the sampler can draw must have a finite log-probability: do sample() and"
                " log_prob() describe the same law?",
            )
        return z, logq

    def log_prob(self, B: Backend, p: Mapping[str, Array], x: Array) -> Array:
        names = [q.name for q in self.params]
        user = self._log_prob

        def call(*args: Array) -> Any:
            return user(dict(zip(names, args[:-1])), args[-1])

        given = self._params(B, p)
        out = call_user_function(B, f"{self.name}.log_prob", call, [*(given[k] for k in names), x])
        if isinstance(out, float):
            raise StochgradError(
                f"distribution {self.name}: log_prob() returned the number {out!r}: it must be an"
                " array of the backend, one value per sample, differentiable in the parameters"
            )
        got, want = B.shape(out)[1:], B.shape(x)[1:]
        if tuple(want[: len(got)]) != tuple(got):
            raise StochgradError(
                f"distribution {self.name}: log_prob() returned {describe(out)} for a value of shape"
                f" {B.shape(x)}: after the sample axis its shape must be a prefix of the value's"
                f" logical shape {want} (one entry per element, per event (), or per plate entry)"
            )
        return out

    def _draw(self, B: Backend, p: Mapping[str, Array], draw: Draw, shape: tuple[int, ...]) -> Array:
        noise = Noise(B, self.name, draw, shape)
        where = f"distribution {self.name}: sample()"
        try:
            z = self._sample(self._params(B, p), noise)
        except StochgradError:
            raise
        except Exception as exc:
            raise StochgradError(
                f"{where} raised {type(exc).__name__}: {exc} (called on parameters of shapes"
                f" { ({k: B.shape(v) for k, v in p.items()}) })"
            ) from exc
        if noise.rows is None:
            raise StochgradError(
                f"{where} drew no noise: a sampler must take its randomness from noise(kind, shape)"
                " (its second argument), so that seeds reproduce and chunks agree"
            )
        expected = (noise.rows, *shape)
        problem = B.native_problem(z)
        if problem is not None or not hasattr(z, "shape"):
            hint = " (discrete values as floats: 0.0, 1.0, ...)" if self.discrete else ""
            raise StochgradError(
                f"{where} returned {describe(z)}: {problem or 'it has no shape'}; expected an array"
                f" of the {B.name} backend of shape {expected}{hint}"
            )
        if tuple(B.shape(z)) != expected:
            raise StochgradError(
                f"{where} returned {describe(z)}; expected shape {expected}: the {noise.rows} samples"
                f" of its noise, then the logical shape {tuple(shape)} of one sample (value_shape)"
            )
        if self.check:
            _check_finite(B, z, f"{where} returned", "a sample must be finite")
        return z


def _check_finite(B: Backend, x: Array, what: str, why: str) -> None:
    """A :class:`StochgradError` if ``x`` has a NaN or an infinity: one number read back (the sum
    of ``0 * x``, NaN exactly when some entry is not finite), then the first bad entry for the message."""
    y = B.stop_gradient(x)
    shape = B.shape(y)
    if np.isfinite(B.item(B.sum(y * 0.0, tuple(range(len(shape)))))):
        return
    values = B.to_numpy(y)
    index = tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])
    raise StochgradError(
        f"{what} {float(values[index])!r} at index {index} (sample {index[0]}) of an array of shape"
        f" {tuple(shape)}: {why}"
    )


def before_register(dist: Distribution, old: Distribution | None) -> None:
    """Refuse a user distribution whose name a built-in distribution or function has; called by
    :func:`stochgrad.distributions.register_distribution`.  Replacing a user distribution forgets
    the cached parses and plans made with the old one."""
    from .functions import FUNCTIONS

    if dist.name in FUNCTIONS:
        raise StochgradError(
            f"distribution name {dist.name!r} is the built-in function {dist.name}(); choose another name"
        )
    if old is not None and not getattr(old, "user_defined", False):
        raise StochgradError(
            f"distribution name {dist.name!r} is taken by the built-in distribution"
            f" {old.signature()}; choose another name"
        )
    if old is not None and old is not dist:
        forget_cached()


def unregister_distribution(name: str) -> None:
    """Remove a user distribution (registered by :func:`stochgrad.register_distribution`); built-in
    ones cannot be removed."""
    from .distributions import DISTRIBUTIONS

    d = DISTRIBUTIONS.get(name)
    if d is None:
        raise StochgradError(f"no distribution named {name!r} is registered{did_you_mean(str(name), DISTRIBUTIONS)}")
    if not getattr(d, "user_defined", False):
        raise StochgradError(f"{name} is a built-in distribution; only user distributions can be unregistered")
    del DISTRIBUTIONS[name]
    forget_cached()


def forget_cached() -> None:
    """Clear the caches that hold parses and plans made with a distribution's old facts."""
    from . import api, parser, planner

    parser._parse.cache_clear()
    planner._plan_cached.cache_clear()
    api._RUNNABLE.clear()
