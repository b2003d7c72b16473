"""margarine 1.x's ``KDE`` on margflow's :class:`~margflow.KDE`."""

from __future__ import annotations

import numbers

import margflow
from margflow.compat.margarine._common import Compat, as_numpy, parameter_labels, pop_options, read_input
from margflow.data import kish_ess

__all__ = ["KDE"]

_OPTIONS = {
    "weights": None,
    "theta_min": None,
    "theta_max": None,
    "parameters": None,
    "bw_method": "silverman",
    "seed": 0,
}


class KDE(Compat):
    """margarine 1.x's ``KDE(theta, **kwargs)``: a weighted Gaussian KDE in the probit space of the box.

    Parameters
    ----------
    theta : ndarray (n, d), tf.Tensor, or anesthetic samples
    **kwargs
        margarine's ``weights``, ``theta_min``, ``theta_max``, ``parameters``,
        ``bw_method`` ('silverman', 'scott' or a number: the kernel scale in
        units of the whitened samples); margflow's ``seed``.

    Notes
    -----
    As in margarine, call :meth:`generate_kde` before using it. ``log_prob``
    and ``__call__`` return numpy, ``sample`` a tensor. ``__call__`` is
    margflow's exact hypercube transform (margarine solved one root per
    coordinate and row).
    """

    _margflow_class = margflow.KDE
    _returns_tensors = False

    def __init__(self, theta, **kwargs):
        opts = pop_options(kwargs, "KDE", _OPTIONS)
        bw = opts["bw_method"]
        if isinstance(bw, bool) or not isinstance(bw, str | numbers.Real):
            raise TypeError(f"'bw_method' must be 'silverman', 'scott' or a number, got {bw!r}")
        self.bw_method = bw
        self._input = read_input(
            "KDE", theta, opts["weights"], opts["parameters"], opts["theta_min"], opts["theta_max"]
        )
        self._parameters, self._theta, self._seed = opts["parameters"], theta, opts["seed"]
        samples, weights, params, bounds, box = self._input
        # margarine's attributes before generate_kde(), from the same validation the KDE will do
        data = margflow.load_samples(samples, params=params, weights=weights, bounds=bounds)
        self.parameters = opts["parameters"]
        self.box = box
        self.theta, self.sample_weights = data.theta, data.weights
        self.theta_min, self.theta_max = box[:, 0].copy(), box[:, 1].copy()
        self.n = kish_ess(data.weights)
        self.estimator = None

    def generate_kde(self):
        """Build the KDE (margflow's, bandwidth ``bw_method``); returns the margflow estimator."""
        if self._input is None:  # loaded from a file: built already
            return self.estimator
        samples, weights, params, bounds, box = self._input
        est = margflow.KDE(
            samples, params=params, bounds=bounds, weights=weights, bandwidth=self.bw_method, seed=self._seed
        )
        self._adopt(est, parameter_labels(self._theta, self._parameters, est), box)
        return est

    @property
    def kde(self):
        """The margflow KDE (margarine kept a scipy ``gaussian_kde`` here)."""
        self._built()
        return self.estimator

    def _built(self):
        if self.estimator is None:
            raise RuntimeError("call generate_kde() before using the KDE")

    def _restore_settings(self):
        self.bw_method = self.estimator.config["bandwidth"]
        self._seed = self.estimator.seed
        self._input = None

    def __call__(self, u):
        self._built()
        return super().__call__(u)

    def sample(self, length=1000, *, seed=None):
        import tensorflow as tf

        self._built()
        return tf.constant(super().sample(length, seed=seed), dtype=tf.float64)

    def log_prob(self, params):
        self._built()
        return super().log_prob(params)

    def log_like(self, params, logevidence, prior=None, prior_weights=None):
        """``log P(θ) + log Z - log π(θ)``, with π a KDE of the prior samples ``prior`` (weights
        ``prior_weights``) over the same box, or uniform on the box when ``prior`` is None."""
        self._built()
        prior_de = None
        if prior is not None:
            prior_de = margflow.KDE(
                as_numpy(prior),
                params=self.estimator.params,
                bounds=self.box,
                weights=None if prior_weights is None else as_numpy(prior_weights),
                bandwidth=self.bw_method,
                seed=self._seed,
            )
        return self._log_like(params, logevidence, prior_de)
