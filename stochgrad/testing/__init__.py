"""Tools for testing gradient estimators: statistical assertions and Hypothesis strategies.

``stochgrad.testing.assertions`` needs only numpy; ``stochgrad.testing.strategies``
needs Hypothesis (``pip install 'stochgrad[test]'``) and is imported on demand.
"""

from .assertions import assert_estimate, assert_unbiased, assert_within_stderr, check_pathwise, z_threshold

__all__ = ["assert_estimate", "assert_unbiased", "assert_within_stderr", "check_pathwise", "z_threshold"]
