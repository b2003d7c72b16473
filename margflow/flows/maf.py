"""Masked autoregressive flow: a chain of TFP MaskedAutoregressiveFlow bijectors."""

from __future__ import annotations

from functools import cache

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from margflow.flows.base import FlowEstimator
from margflow.flows.made import MADE

__all__ = ["MAF"]

tfb = tfp.bijectors

#: log-scales pass through ``c * tanh(s / c)``: unchanged for |s| << c, never
#: beyond ±c, so one layer cannot blow a point to overflow
_LOG_SCALE_CLAMP = 5.0


class MAF(FlowEstimator):
    """Masked autoregressive flow on weighted samples in a bounded box.

    ``n_layers`` TFP ``MaskedAutoregressiveFlow`` bijectors, each driven by a
    MADE (the masks of TFP's ``AutoregressiveNetwork``) that outputs a shift
    and a log-scale per parameter, with a fixed permutation of the parameters
    between layers. The output layer of every network starts at zero, so the
    untrained flow is the identity and the estimator is the weighted Gaussian
    fit of the samples in the transformed space (probit/logit/log of the
    bounds).

    Density, training loss, sampling and ``transform`` run margflow's fused
    functions of the flat weight vector (the same arithmetic as the TFP chain,
    tested equal, but one compiled program shared by every flow of the same
    architecture); the TFP chain itself stays available as the reference
    model.

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
        Hidden units of each MADE. The default (32, 32) fitted the four
        benchmark targets as well as margarine's (50, 50) in ~40% less time
        (``benchmarks/RESULTS.md``, 10,000 samples each).
    activation : str
        Activation of the hidden layers (a ``tf.nn`` name).
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
        hidden=(32, 32),
        activation="tanh",
        transform="probit",
        blend="auto",
        seed=0,
    ):
        super().__init__(
            samples, params=params, bounds=bounds, weights=weights, transform=transform, blend=blend, seed=seed
        )
        self._init_architecture(n_layers, hidden, activation)

    def _init_architecture(self, n_layers, hidden, activation, **extra):
        """Validate the architecture, draw the permutations, build, and set the initial weights."""
        name = type(self).__name__
        if int(n_layers) != n_layers or n_layers < 1:
            raise ValueError(f"n_layers must be a positive integer, got {n_layers!r}")
        hidden = [int(h) for h in np.atleast_1d(hidden)]
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden must be a sequence of positive integers, got {hidden!r}")
        if self.dim < 2:
            raise ValueError(f"{name} needs at least 2 parameters; use mf.KDE for a single parameter")
        perms = self._permutations(int(n_layers), np.random.default_rng(self.seed))
        self.config = {
            "n_layers": int(n_layers),
            "hidden": hidden,
            "activation": str(activation),
            **extra,
            "permutations": [p.tolist() for p in perms],
            "seed": self.seed,
        }
        self._build(self.config)
        self._variables[0].assign(self._graph.init(self.seed))

    def _permutations(self, n_layers, rng):
        """The fixed permutation of the parameters between layers: reversed, and random every
        other layer when d > 2."""
        d = self.dim
        return [np.arange(d)[::-1] if d == 2 or i % 2 == 0 else rng.permutation(d) for i in range(n_layers - 1)]

    def _settings(self):
        arch = {k: self.config[k] for k in ("n_layers", "hidden", "activation")}
        return {**super()._settings(), **arch}

    def _make_graph(self, config):
        return _maf_graph(self.dim, config["n_layers"], tuple(config["hidden"]), config["activation"])

    def _build(self, config):
        d = self.dim
        self._graph = graph = self._make_graph(config)
        flat = tf.Variable(tf.zeros([graph.size], self._dtype), name="flow_weights")
        self._variables = [flat]
        perms = np.array(config["permutations"], dtype=np.int32).reshape(-1, d)
        self._consts = (tf.constant(perms), tf.constant(np.argsort(perms, axis=1).astype(np.int32)))
        layers = []
        for i in range(config["n_layers"]):
            layers.append(graph.tfp_layer(flat, i))
            if i < config["n_layers"] - 1:
                layers.append(tfb.Permute(permutation=config["permutations"][i]))
        # tfb.Chain applies the last element first: base → layer 0 → ... → z
        self._bijector = tfb.Chain(layers[::-1])
        self._make_distribution()


class _MAFGraph:
    """The arithmetic of one MAF architecture, as pure functions of its weights.

    One instance per architecture (cached), so the functions traced from it are
    shared by every flow with that architecture. Subclasses change the
    element-wise map of a layer (``_map_forward``, ``_map_inverse``) and the
    number of network outputs per parameter.
    """

    n_outputs = 2
    #: sampling inverts each layer coordinate by coordinate (a loop XLA cannot differentiate)
    sequential_forward = True

    def __init__(self, d, n_layers, hidden, activation):
        self.d, self.n_layers = d, n_layers
        self.made = self._network(hidden, activation)
        self.size = n_layers * self.made.size

    def _network(self, hidden, activation):
        """The network of one layer (one for every layer: they differ in their weights only)."""
        return MADE(self.d, hidden, activation, params=self.n_outputs)

    def init(self, seed):
        """Initial flat weights: every network's output layer zero, so the flow is the identity."""
        return np.concatenate([self.made.init(np.random.default_rng([seed, i])) for i in range(self.n_layers)])

    def _layer_weights(self, flat):
        return [self.made.split(c) for c in tf.split(flat, self.n_layers)]

    def _shift_log_scale(self, weights, y):
        out = self.made(weights, y)
        return out[..., 0], _LOG_SCALE_CLAMP * tf.tanh(out[..., 1] / _LOG_SCALE_CLAMP)

    def _map_forward(self, weights, cond, u):
        """Layer map base-side ``u`` → z-side, with its parameters from the network at ``cond``."""
        shift, log_scale = self._shift_log_scale(weights, cond)
        return u * tf.exp(log_scale) + shift

    def _map_inverse(self, weights, y):
        """Layer map z-side ``y`` → base side in one pass, and ``log|det ∂u/∂y|``."""
        shift, log_scale = self._shift_log_scale(weights, y)
        return (y - shift) * tf.exp(-log_scale), -tf.reduce_sum(log_scale, axis=-1)

    def tfp_layer(self, flat, i):
        """Layer ``i`` as a TFP bijector (the reference the fused functions are tested against)."""

        def fn(y):
            return self._shift_log_scale(self._layer_weights(flat)[i], y)

        return tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=fn)

    def forward(self, variables, consts, eps):
        """``eps → z``, the sampling direction.

        Each layer is inverted by ``d`` passes of its network (pass ``k`` fixes
        coordinate ``k``), as TFP's ``MaskedAutoregressiveFlow.forward`` does.
        """
        (flat,), (perms, _) = variables, consts
        weights = self._layer_weights(flat)
        y = eps
        for i in range(self.n_layers):
            if i > 0:
                y = tf.gather(y, perms[i - 1], axis=-1)
            y = self._layer_forward(weights[i], y)
        return y

    def _layer_forward(self, weights, u):
        def body(k, x):
            return k + 1, self._map_forward(weights, x, u)

        _, x = tf.while_loop(
            lambda k, x: k < self.d, body, (tf.constant(0), tf.zeros_like(u)), maximum_iterations=self.d
        )
        return x

    def inverse(self, variables, consts, z):
        """``z → eps`` through every layer in one pass, and ``log|det ∂eps/∂z|``."""
        (flat,), (_, inv_perms) = variables, consts
        weights = self._layer_weights(flat)
        y, logdet = z, 0.0
        for i in reversed(range(self.n_layers)):
            y, ld = self._map_inverse(weights[i], y)
            logdet += ld
            if i > 0:
                y = tf.gather(y, inv_perms[i - 1], axis=-1)
        return y, logdet

    def log_prob(self, variables, consts, z):
        """log q(z) under the standard normal base."""
        eps, logdet = self.inverse(variables, consts, z)
        return logdet - 0.5 * tf.reduce_sum(eps * eps, axis=-1) - 0.5 * self.d * np.log(2 * np.pi)


@cache
def _maf_graph(d, n_layers, hidden, activation):
    return _MAFGraph(d, n_layers, hidden, activation)
