"""Prior log-densities from the forms users give them: bounds, an estimator, scipy, a function.

:func:`log_density` turns any of them into a picklable callable ``(n, d) →
(n,)`` float64 that is ``-inf`` outside the prior's support, so statistics and
likelihoods handle every prior one way.
"""

from __future__ import annotations

import numpy as np

from margflow.bounds import parse_bounds

__all__ = ["log_density", "UniformBox", "evaluate_rows"]


class UniformBox:
    """The uniform density on a finite box: ``-log(volume)`` inside, ``-inf`` outside.

    Parameters
    ----------
    bounds : (d, 2) array_like
        Finite lower and upper bounds.
    """

    def __init__(self, bounds):
        b = np.asarray(bounds, dtype=np.float64)
        if b.ndim != 2 or b.shape[1] != 2:
            raise ValueError(f"bounds must have shape (d, 2), got {b.shape}")
        if not np.all(np.isfinite(b)):
            raise ValueError("a uniform prior needs finite bounds on every parameter; give the prior box")
        if np.any(b[:, 1] <= b[:, 0]):
            raise ValueError("every upper bound must exceed its lower bound")
        self.bounds = b
        self.log_volume = float(np.sum(np.log(b[:, 1] - b[:, 0])))

    def __call__(self, theta):
        x = np.asarray(theta, dtype=np.float64)
        inside = np.all((x >= self.bounds[:, 0]) & (x <= self.bounds[:, 1]), axis=-1)
        return np.where(inside, -self.log_volume, -np.inf)

    def __repr__(self):
        return f"UniformBox(log_volume={self.log_volume:.6g})"


class _Estimator:
    def __init__(self, estimator):
        self.estimator = estimator

    def __call__(self, theta):
        return self.estimator.log_prob(theta)


class _Scipy:
    """A frozen scipy distribution over all d parameters, or one 1-D distribution per parameter."""

    def __init__(self, dists, dim):
        self.dists, self.dim = dists, dim

    def __call__(self, theta):
        x = np.asarray(theta, dtype=np.float64)
        if isinstance(self.dists, list):
            out = sum(np.asarray(dist.logpdf(x[:, i]), dtype=np.float64) for i, dist in enumerate(self.dists))
        else:
            out = np.asarray(self.dists.logpdf(x), dtype=np.float64)
        return np.broadcast_to(out, (len(x),)).astype(np.float64)


class _Callable:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, theta):
        x = np.asarray(theta, dtype=np.float64)
        out = np.asarray(self.fn(x), dtype=np.float64)
        if out.shape != (len(x),):
            raise ValueError(
                f"the prior log-density returned shape {out.shape} for {len(x)} points; "
                "it must take an (n, d) array and return n values"
            )
        return out


def evaluate_rows(fn, x, vectorized=True, what="the log-likelihood"):
    """A user's function of parameters at the (n, d) rows ``x``, as (n,) float64.

    One call on all rows when ``vectorized``, else one call per (d,) row; a
    vectorised function that returns the wrong number of values is an error.
    What counts as a bad value (NaN, +inf) is the caller's to say.
    """
    if vectorized:
        vals = np.asarray(fn(x), dtype=np.float64).reshape(-1)
    else:
        vals = np.array([float(fn(row)) for row in x], dtype=np.float64)
    if vals.shape != (len(x),):
        raise ValueError(f"{what} returned {vals.shape} values for {len(x)} points")
    return vals


def log_density(prior, estimator):
    """The prior of ``estimator``'s parameters as a callable log-density.

    Parameters
    ----------
    prior : None, bounds, DensityEstimator, scipy distribution(s) or callable
        - ``None``: uniform on the estimator's bounds (which must be finite);
        - a (d, 2) array or a dict by parameter name: uniform on that box
          (exact);
        - a margflow estimator over the same parameters (for example the
          prior's own samples, fitted);
        - a frozen scipy distribution over all d parameters (its ``logpdf``
          takes (n, d) rows), or a list of d one-dimensional ones, one per
          parameter in order;
        - a callable ``f(theta)`` taking (n, d) rows and returning n
          log-densities, normalised.
    estimator : DensityEstimator
        Supplies the parameter names, bounds and dimension.

    Returns
    -------
    callable
        Picklable; ``(n, d) → (n,)`` float64.
    """
    from margflow.estimator import DensityEstimator

    params, d = estimator.params, estimator.dim
    if prior is None:
        if not np.all(np.isfinite(estimator.bounds)):
            open_ = [p for p, b in zip(params, estimator.bounds) if not np.all(np.isfinite(b))]
            raise ValueError(
                f"the estimator has open bounds on {open_}, so there is no default uniform prior; "
                "give prior= (a box, an estimator, a scipy distribution or a log-density function)"
            )
        return UniformBox(estimator.bounds)
    if isinstance(prior, DensityEstimator):
        if prior.dim != d:
            raise ValueError(f"the prior estimator has {prior.dim} parameters, the estimator {d}")
        if list(prior.params) != list(params):
            raise ValueError(f"the prior estimator's parameters {prior.params} differ from the estimator's {params}")
        return _Estimator(prior)
    if isinstance(prior, dict) or (isinstance(prior, np.ndarray | list | tuple) and _is_box(prior, d)):
        return UniformBox(parse_bounds(prior, params))
    if isinstance(prior, list | tuple) and all(hasattr(p, "logpdf") for p in prior):
        if len(prior) != d:
            raise ValueError(f"give one 1-D prior distribution per parameter: {len(prior)} for {d} parameters")
        return _Scipy(list(prior), d)
    if hasattr(prior, "logpdf"):
        return _Scipy(prior, d)
    if callable(prior):
        return _Callable(prior)
    raise TypeError(
        f"cannot use {type(prior).__name__} as a prior: give a box, a margflow estimator, "
        "a scipy distribution (or a list of them) or a log-density function"
    )


def _is_box(obj, d):
    try:
        return np.asarray(obj, dtype=np.float64).shape == (d, 2)
    except (TypeError, ValueError):
        return False
