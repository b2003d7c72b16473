"""Masked autoregressive flow: a chain of TFP MaskedAutoregressiveFlow bijectors."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from margflow.flows.base import FlowEstimator

__all__ = ["MAF"]

tfb = tfp.bijectors

#: log-scales pass through ``c * tanh(s / c)``: unchanged for |s| << c, never
#: beyond ±c, so one layer cannot blow a point to overflow
_LOG_SCALE_CLAMP = 5.0


class MAF(FlowEstimator):
    """Masked autoregressive flow on weighted samples in a bounded box.

    ``n_layers`` TFP ``MaskedAutoregressiveFlow`` bijectors, each driven by an
    ``AutoregressiveNetwork`` (MADE) that outputs a shift and a log-scale per
    parameter, with a fixed permutation of the parameters between layers. The
    output layer of every network starts at zero, so the untrained flow is the
    identity and the estimator is the weighted Gaussian fit of the samples in
    the transformed space (probit/logit/log of the bounds).

    Parameters
    ----------
    samples : ndarray (n, d), pandas.DataFrame or anesthetic samples
    params : list of str, optional
        Columns to model, by name.
    bounds : None, "auto", (d, 2) array or dict
        Prior bounds; ``None`` (default) is unbounded.
    weights : array_like, optional
        Sample weights (taken from anesthetic samples when given those).
    n_layers : int
        Number of autoregressive layers.
    hidden : tuple of int
        Hidden units of each MADE.
    activation : str
        Activation of the hidden layers.
    transform : {"probit", "logit"}
        Map from a two-sided prior range to the real line.
    seed : int
        Seeds the initial weights, permutations, split and shuffling.

    Examples
    --------
    >>> import numpy as np, margflow as mf
    >>> x = np.random.default_rng(0).normal(size=(500, 2))
    >>> flow = mf.MAF(x, params=["a", "b"], n_layers=2, hidden=(16, 16))
    >>> hist = flow.fit(epochs=5, progress=False)
    >>> flow.log_prob(x[:3]).shape, flow.sample(4, seed=1).shape
    ((3,), (4, 2))
    """

    def __init__(
        self,
        samples,
        *,
        params=None,
        bounds=None,
        weights=None,
        n_layers=6,
        hidden=(50, 50),
        activation="tanh",
        transform="probit",
        seed=0,
    ):
        super().__init__(samples, params=params, bounds=bounds, weights=weights, transform=transform, seed=seed)
        if int(n_layers) != n_layers or n_layers < 1:
            raise ValueError(f"n_layers must be a positive integer, got {n_layers!r}")
        hidden = [int(h) for h in np.atleast_1d(hidden)]
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden must be a sequence of positive integers, got {hidden!r}")
        if self.dim < 2:
            raise ValueError("MAF needs at least 2 parameters; use mf.KDE for a single parameter")
        rng = np.random.default_rng(self.seed)
        perms = []
        for i in range(int(n_layers) - 1):
            perms.append(np.arange(self.dim)[::-1] if self.dim == 2 or i % 2 == 0 else rng.permutation(self.dim))
        self.config = {
            "n_layers": int(n_layers),
            "hidden": hidden,
            "activation": str(activation),
            "permutations": [p.tolist() for p in perms],
            "seed": self.seed,
        }
        self._build(self.config)

    def _build(self, config):
        d = self.dim
        self.mades = []
        layers = []
        for i in range(config["n_layers"]):
            made = tfb.AutoregressiveNetwork(
                params=2,
                event_shape=[d],
                hidden_units=config["hidden"],
                activation=config["activation"],
                kernel_initializer=tf_keras.initializers.GlorotUniform(seed=config["seed"] * 1000 + i),
                dtype=self._dtype,
            )
            made(tf.zeros([1, d], self._dtype))
            last = made._network.layers[-1]
            for v in last.trainable_variables:
                v.assign(tf.zeros_like(v))
            self.mades.append(made)
            layers.append(tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=_shift_log_scale(made)))
            if i < config["n_layers"] - 1:
                layers.append(tfb.Permute(permutation=config["permutations"][i]))
        # tfb.Chain applies the last element first: base → layer 0 → ... → z
        self._bijector = tfb.Chain(layers[::-1])
        self._variables = [v for made in self.mades for v in made.trainable_variables]
        self._make_distribution()


def _shift_log_scale(made):
    def fn(x):
        shift, raw = tf.unstack(made(x), axis=-1)
        return shift, _LOG_SCALE_CLAMP * tf.tanh(raw / _LOG_SCALE_CLAMP)

    return fn
