"""Exact values and gradients on small Bernoulli vectors by brute force over {0,1}^D (numpy), for the
tests of the relaxation-based estimators (an independent reference: no stochgrad code)."""

import itertools

import numpy as np


def exact(cost, theta, w):
    """Brute force over {0,1}^D for ``b ~ Bernoulli(logits=theta)``: (value, gradient in theta)."""
    p = 1 / (1 + np.exp(-theta))
    value, grad = 0.0, np.zeros_like(theta)
    for bits in itertools.product([0.0, 1.0], repeat=len(theta)):
        b = np.array(bits)
        pb = np.prod(np.where(b == 1, p, 1 - p))
        value += pb * cost(b, w)
        grad += pb * cost(b, w) * (b - p)
    return value, grad
