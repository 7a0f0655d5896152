"""stochgrad: gradients of expectations, written as a DSL.

    import stochgrad as sg
    r = sg.estimate("E[z**2, z ~ Normal(mu, sigma)]", {"mu": 12.0, "sigma": 42.0}, n=100_000)
    r.grad["mu"], r.stderr["mu"]     # about 24, with its standard error
    print(r.plan)                    # which estimator each random node got, and why

Pipeline: :func:`parse` (text -> immutable IR) -> :func:`plan` (an estimator per
random node, with reasons: a :class:`Plan` that runs, ``plan.estimate(params, n=...)``,
``plan.objective(n=...)``) -> a program run on a backend (autograd or torch).
"""

__version__ = "0.1.0"  # the one source of the version: pyproject.toml reads it (tool.setuptools.dynamic)

from . import continuous as _continuous  # noqa: F401  (registers the distributions)
from . import discrete as _discrete  # noqa: F401
from . import gammas as _gammas  # noqa: F401
from . import heavytails as _heavytails, gammafamily as _gammafamily, vonmises as _vonmises  # noqa: F401
from . import klpairs as _klpairs  # noqa: F401  (their KL closed forms)
from . import mvn as _mvn  # noqa: F401
from .analysis import parameters
from .api import Estimate, Plan, estimate, plan
from .compare import Comparison, compare
from .compiled import Objective, compile  # noqa: A004
from .backend import Backend
from .backend_registry import available_backends, get_backend, register_backend
from .distributions import DISTRIBUTIONS, Distribution, InverseCDF, Param, register_distribution
from .embed import KL, E, dist_constructor, function, symbols
from .embed import entropy, iid, log_prob
from .errors import BackendError, BiasWarning, ParseError, PlanError, StochgradError, ValidationError
from .errors import HeavyTailWarning, MemoryLimitError, NonFiniteWarning, PrecisionWarning
from .estimators import (
    Baseline,
    Detached,
    Enumerate,
    EnumerateExamples,
    MovingAverage,
    Pathwise,
    Rebar,
    Relax,
    Relaxed,
    Score,
    StraightThrough,
    StraightThroughGumbel,
)
from .estimators import ESTIMATORS, EstimatorSpec, applicable, register_estimator
from .functions import FUNCTIONS, UserFunction
from .ir import Expr
from .parser import parse
from .userdist import UserDistribution, unregister_distribution


Normal = dist_constructor("Normal")
LogNormal = dist_constructor("LogNormal")
Exponential = dist_constructor("Exponential")
Weibull = dist_constructor("Weibull")
Uniform = dist_constructor("Uniform")
Laplace = dist_constructor("Laplace")
Gumbel = dist_constructor("Gumbel")
Logistic = dist_constructor("Logistic")
Cauchy = dist_constructor("Cauchy")
Kumaraswamy = dist_constructor("Kumaraswamy")
Bernoulli = dist_constructor("Bernoulli")
Categorical = dist_constructor("Categorical")
Poisson = dist_constructor("Poisson")
Binomial = dist_constructor("Binomial")
Geometric = dist_constructor("Geometric")
Gamma = dist_constructor("Gamma")
Beta = dist_constructor("Beta")
Dirichlet = dist_constructor("Dirichlet")
StudentT, HalfNormal, HalfCauchy, InverseGamma, Chi2, VonMises = (
    dist_constructor(n) for n in ("StudentT", "HalfNormal", "HalfCauchy", "InverseGamma", "Chi2", "VonMises")
)
MultivariateNormal = dist_constructor("MultivariateNormal")

exp, log, log1p, expm1, sqrt = (function(n) for n in ("exp", "log", "log1p", "expm1", "sqrt"))
abs, sin, cos, tan, tanh = (function(n) for n in ("abs", "sin", "cos", "tan", "tanh"))  # noqa: A001
sigmoid, softplus, floor, sign = (function(n) for n in ("sigmoid", "softplus", "floor", "sign"))
round, argmax = function("round"), function("argmax")  # noqa: A001
sum, mean = function("sum"), function("mean")  # noqa: A001
_MORE = (
    "maximum",
    "minimum",
    "where",
    "clip",
    "logsumexp",
    "logmeanexp",
    "softmax",
    "log_softmax",
    "logsigmoid",
    "lgamma",
    "digamma",
    "erf",
    "max",
    "min",
    "prod",
    "transpose",
)
(
    maximum,
    minimum,
    where,
    clip,
    logsumexp,
    logmeanexp,
    softmax,
    log_softmax,
    logsigmoid,  # noqa: A001
    lgamma,
    digamma,
    erf,
    max,
    min,
    prod,
    transpose,
) = (function(n) for n in _MORE)

__all__ = [
    "parse",
    "plan",
    "estimate",
    "KL",
    "compare",
    "Comparison",
    "Estimate",
    "compile",
    "Objective",
    "UserFunction",
    "Plan",
    "Expr",
    "E",
    "symbols",
    "parameters",
    "Baseline",
    "Pathwise",
    "Score",
    "Detached",
    "Enumerate",
    "EnumerateExamples",
    "Rebar",
    "Relax",
    "Relaxed",
    "StraightThrough",
    "StraightThroughGumbel",
    "MovingAverage",
    "Backend",
    "get_backend",
    "register_backend",
    "available_backends",
    "Distribution",
    "InverseCDF",
    "Param",
    "register_distribution",
    "DISTRIBUTIONS",
    "FUNCTIONS",
    "StochgradError",
    "BiasWarning",
    "ParseError",
    "PlanError",
    "ValidationError",
    "BackendError",
    "NonFiniteWarning",
    "HeavyTailWarning",
    "MemoryLimitError",
    "PrecisionWarning",
    "Normal",
    "LogNormal",
    "Exponential",
    "Weibull",
    "Uniform",
    "Laplace",
    "Gumbel",
    "Logistic",
    "Cauchy",
    "Kumaraswamy",
    "Bernoulli",
    "Categorical",
    "Poisson",
    "Binomial",
    "Geometric",
    "Gamma",
    "Beta",
    "Dirichlet",
    "MultivariateNormal",
    "round",
    "argmax",
    "exp",
    "log",
    "log1p",
    "expm1",
    "sqrt",
    "abs",
    "sin",
    "cos",
    "tan",
    "tanh",
    "sigmoid",
    "softplus",
    "floor",
    "sign",
    "sum",
    "mean",
]
__all__ += ["log_prob", "entropy", "iid"]  # models: stochgrad.densities
__all__ += ["StudentT", "HalfNormal", "HalfCauchy", "InverseGamma", "Chi2", "VonMises"]
__all__ += ["UserDistribution", "unregister_distribution"]  # distributions given by a sampler and a log density
__all__ += ["ESTIMATORS", "EstimatorSpec", "applicable", "register_estimator"]  # adding an estimator
__all__ += list(_MORE)  # the function table's newer rows
