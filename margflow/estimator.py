"""The density-estimator interface shared by every margflow estimator.

A subclass models the density of ``z``, the whitened image of the parameters
in R^d (see :mod:`margflow.bounds`), as a bijection from a standard normal
``eps``. It supplies three TensorFlow methods:

- ``_z_log_prob(z)``: log-density of ``z``;
- ``_z_from_base(eps)``: ``eps → z``;
- ``_base_from_z(z)``: ``z → eps``;

and this class turns them into the numpy float64 API (``log_prob``,
``sample``, ``transform``, ``inverse_transform``) with bounds handled once.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from margflow.bounds import _TINY, Preprocessor, ndtr
from margflow.data import SampleData, load_samples

__all__ = ["DensityEstimator"]

_CHUNK = 1 << 17


def _ndtri_symmetric(u):
    """Φ^{-1}(u) that keeps its precision next to 1 and is finite at 0 and 1."""
    lo = tf.clip_by_value(u, _TINY, 1.0)
    hi = tf.clip_by_value(1.0 - u, _TINY, 1.0)
    return tf.where(u <= 0.5, tf.math.ndtri(lo), -tf.math.ndtri(hi))


class DensityEstimator:
    """Base class: data, bounds, and the numpy-facing API.

    Parameters
    ----------
    samples : ndarray, pandas.DataFrame or anesthetic samples
    params : list of str, optional
    bounds : None, "auto", (d, 2) array or dict
    weights : array_like, optional
    transform : {"probit", "logit"}
        Map from a two-sided prior range to the real line.
    seed : int
    """

    #: every concrete estimator, by class name, for :func:`margflow.load`
    registry: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        DensityEstimator.registry[cls.__name__] = cls

    def __init__(self, samples, *, params=None, bounds=None, weights=None, transform="probit", seed=0):
        data = load_samples(samples, params=params, weights=weights, bounds=bounds)
        positive = data.weights > 0
        pre = Preprocessor.fit(data.theta[positive], data.weights[positive], data.bounds, data.params, transform)
        self._setup(data, pre, seed)

    def _setup(self, data: SampleData, pre: Preprocessor, seed):
        self.data = data
        self.seed = int(seed)
        self._pre = pre
        self.history = None
        d = self.dim
        spec = [tf.TensorSpec([None, d], tf.float64)]
        lo = tf.constant(self.bounds[:, 0])
        hi = tf.constant(self.bounds[:, 1])
        # an interior point per parameter, evaluated in place of outside points
        b = np.where(np.isfinite(self.bounds), self.bounds, 0.0)
        has = np.isfinite(self.bounds)
        mid = np.where(has.all(1), b.mean(1), np.where(has[:, 0], b[:, 0] + 1, np.where(has[:, 1], b[:, 1] - 1, 0.0)))
        mid = tf.constant(mid)

        @tf.function(input_signature=spec, autograph=False)
        def log_prob(x):
            # ±inf in an open direction is outside the support too
            ok = (x >= lo) & (x <= hi) & tf.math.is_finite(x)
            inside = tf.reduce_all(ok, axis=-1)
            z, ld = pre.forward(tf.where(ok, x, mid + tf.zeros_like(x)))
            lp = self._z_log_prob(z) + ld
            return tf.where(inside, lp, tf.constant(-np.inf, tf.float64))

        def theta_from_base(eps):
            return pre.inverse(self._z_from_base(eps))[0]

        from_base = tf.function(theta_from_base, input_signature=spec, autograph=False)

        @tf.function(input_signature=spec, autograph=False)
        def transform(u):
            return theta_from_base(_ndtri_symmetric(u))

        @tf.function(input_signature=spec, autograph=False)
        def inverse_transform(x):
            return ndtr(self._base_from_z(pre.forward(x)[0]))

        self._tf_log_prob = log_prob
        self._tf_from_base = from_base
        self._tf_transform = transform
        self._tf_inverse_transform = inverse_transform

    # -- what subclasses provide ------------------------------------------------
    def _z_log_prob(self, z):
        raise NotImplementedError

    def _z_from_base(self, eps):
        raise NotImplementedError

    def _base_from_z(self, z):
        raise NotImplementedError

    # -- public API -------------------------------------------------------------
    @property
    def params(self):
        """Parameter names, in column order."""
        return list(self.data.params)

    @property
    def bounds(self):
        """(d, 2) float64 array of prior bounds; ``±inf`` where open."""
        return self.data.bounds.copy()

    @property
    def dim(self):
        """Number of parameters."""
        return len(self.data.params)

    @property
    def logZ(self):
        """Evidence of the nested-sampling input, or None."""
        return self.data.logZ

    def _rows(self, x, name, check_finite=True):
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1 and x.shape[0] == self.dim:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{name} must have shape (n, {self.dim}) for parameters {self.params}, got {x.shape}")
        if check_finite and np.isnan(x).any():
            raise ValueError(f"{name} contains {int(np.isnan(x).any(axis=1).sum())} rows with NaN")
        return x

    def _chunked(self, fn, x):
        if len(x) == 0:
            return fn(tf.constant(x)).numpy()
        return np.concatenate([fn(tf.constant(x[i : i + _CHUNK])).numpy() for i in range(0, len(x), _CHUNK)])

    def log_prob(self, theta):
        """Log-density of the parameters.

        Parameters
        ----------
        theta : array_like, shape (n, d) or (d,)

        Returns
        -------
        ndarray, shape (n,), float64
            ``-inf`` outside the bounds; finite on and inside them.
        """
        x = self._rows(theta, "theta")
        out = self._chunked(self._tf_log_prob, x)
        if np.isnan(out).any():
            raise FloatingPointError(
                f"log_prob is NaN at {int(np.isnan(out).sum())} points; this is a margflow bug, please report it"
            )
        return out

    def sample(self, n, seed=None):
        """Draw ``n`` samples (n, d) float64, inside the bounds.

        Parameters
        ----------
        n : int
        seed : int, optional
            The same seed gives the same samples.
        """
        eps = np.random.default_rng(seed).standard_normal((int(n), self.dim))
        return self._chunked(self._tf_from_base, eps)

    def transform(self, u):
        """Map points of the unit hypercube to parameters, row by row.

        Deterministic and order-preserving, so it serves as the prior transform
        of a nested sampler: uniform ``u`` gives samples of the estimator.

        Parameters
        ----------
        u : array_like, shape (n, d) or (d,), values in [0, 1]
        """
        u = self._rows(u, "u")
        if (u < 0).any() or (u > 1).any():
            raise ValueError("u must lie in the unit hypercube [0, 1]^d")
        return self._chunked(self._tf_transform, u)

    def inverse_transform(self, theta):
        """Inverse of :meth:`transform`: parameters → unit hypercube."""
        x = self._rows(theta, "theta")
        outside = ~self._pre.box.contains(x)
        if outside.any():
            raise ValueError(
                f"{int(outside.sum())} points lie outside the bounds; inverse_transform needs points inside"
            )
        return self._chunked(self._tf_inverse_transform, x)

    def save(self, path):
        """Write the estimator to one file (see :func:`margflow.load`)."""
        from margflow.io import save

        save(self, path)

    def __repr__(self):
        trained = "untrained" if self.history is None else f"trained {self.history.epochs} epochs"
        return f"{type(self).__name__}(params={self.params}, dim={self.dim}, {trained})"

    # -- state for io -----------------------------------------------------------
    def _get_state(self):
        """``(config, arrays)`` of the subclass; plain JSON and numpy."""
        raise NotImplementedError

    def _set_state(self, config, arrays):
        raise NotImplementedError

    @classmethod
    def _restore(cls, data, pre, seed, config, arrays):
        obj = cls.__new__(cls)
        obj._setup(data, pre, seed)
        obj._set_state(config, arrays)
        return obj
