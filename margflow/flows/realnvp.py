"""Real NVP: affine coupling layers with alternating halves and a final element-wise affine layer."""

from __future__ import annotations

from functools import cache

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from margflow.flows.made import MADE
from margflow.flows.maf import _LOG_SCALE_CLAMP, MAF, _MAFGraph

__all__ = ["RealNVP"]

tfb = tfp.bijectors


class RealNVP(MAF):
    """Real NVP flow (Dinh et al. 2017) on weighted samples in a bounded box.

    ``n_layers`` affine coupling layers: in each, the first ``d // 2``
    coordinates pass unchanged and set, through a fully connected network, a
    shift and a log-scale for the others; the order of the coordinates is
    reversed between layers, so the halves alternate. A final element-wise
    affine layer (a shift and a log-scale per parameter) follows. Every
    network's output layer and the final layer start at zero, so the
    untrained flow is the identity on the whitened samples, which is the
    weighted Gaussian fit of the samples in the transformed space (as for
    :class:`MAF`). Unlike the MAF, sampling and ``transform`` take one pass
    per layer.

    Measured with the shared training defaults, 10,000 samples, KL(p‖q) on
    20,000 fresh draws, mean of two seeds (MAF in brackets): banana 0.0051
    (0.0053), Himmelblau 0.0123 (0.0114), Student-t 0.019 (0.013), 8-D
    rotated bananas 0.150 (0.147); fit times within 20% of the MAF's.

    Parameters
    ----------
    samples, params, bounds, weights, transform, blend, seed
        As for :class:`MAF`.
    n_layers : int
        Number of coupling layers.
    hidden : tuple of int
        Hidden units of each coupling network.
    activation : str
    base : {"normal", "student_t"}
        As for :class:`MAF`.

    Examples
    --------
    >>> import numpy as np, margflow as mf
    >>> x = np.random.default_rng(0).normal(size=(500, 2))
    >>> flow = mf.RealNVP(x, n_layers=2, hidden=(16, 16))
    >>> hist = flow.fit(epochs=5, progress=False)
    >>> flow.log_prob(x[:3]).shape, flow.sample(4, seed=1).shape
    ((3,), (4, 2))
    """

    def _permutations(self, n_layers, rng):
        return [np.arange(self.dim)[::-1] for _ in range(n_layers - 1)]

    def _make_graph(self, config):
        return _realnvp_graph(
            self.dim, config["n_layers"], tuple(config["hidden"]), config["activation"], config.get("base", "normal")
        )

    def _build(self, config):
        super()._build(config)
        flat, d = self._variables[0], self.dim
        shift = tfp.util.DeferredTensor(flat, lambda f: f[-2 * d : -d], shape=[d])
        log_scale = tfp.util.DeferredTensor(
            flat, lambda f: _LOG_SCALE_CLAMP * tf.tanh(f[-d:] / _LOG_SCALE_CLAMP), shape=[d]
        )
        # the chain applies its last bijector first: the final affine layer is applied last
        final = [tfb.Shift(shift), tfb.Scale(log_scale=log_scale)]
        self._bijector = tfb.Chain(final + list(self._bijector.bijectors))
        self._make_distribution()


class _CouplingNet(MADE):
    """A fully connected network with the interface of :class:`MADE`, masked as a coupling.

    Inputs ``0 .. m-1`` feed it; it has outputs (``params`` each) only for
    parameters ``m .. d-1``, those for the first ``m`` being exactly zero.
    """

    def __init__(self, d, m, hidden, activation="tanh", params=2):
        self.m = int(m)
        super().__init__(d, hidden, activation, params)
        # the output biases of the conditioning inputs are masked too: their outputs are exactly zero
        self._passing = (np.arange(self.d) >= self.m).astype(np.float32)[:, None]

    def _masks(self):
        units = [self.d, *self.hidden]
        masks = [np.ones((a, b)) for a, b in zip(units[:-1], units[1:])]
        masks[0][self.m :] = 0.0  # only the first m inputs condition
        out = np.ones((units[-1], self.d * self.params))
        out[:, : self.m * self.params] = 0.0  # no output for the conditioning inputs
        masks.append(out)
        return masks

    def __call__(self, weights, x):
        return super().__call__(weights, x) * self._passing


class _RealNVPGraph(_MAFGraph):
    """The arithmetic of one Real NVP architecture (see :class:`_MAFGraph`).

    The flat weights are the coupling networks, layer by layer, then the
    final layer's ``d`` shifts and ``d`` log-scales.
    """

    sequential_forward = False

    def __init__(self, d, n_layers, hidden, activation, base="normal"):
        self.m = d // 2
        super().__init__(d, n_layers, hidden, activation, base)
        self.size += 2 * d  # the final layer

    def _network(self, hidden, activation):
        return _CouplingNet(self.d, self.m, hidden, activation, params=self.n_outputs)

    def init(self, seed):
        return np.concatenate([super().init(seed), np.zeros(2 * self.d, np.float32)])

    def _layer_weights(self, flat):
        return super()._layer_weights(flat[: -2 * self.d])

    def _final(self, flat):
        return flat[-2 * self.d : -self.d], _LOG_SCALE_CLAMP * tf.tanh(flat[-self.d :] / _LOG_SCALE_CLAMP)

    def _layer_forward(self, weights, u):
        # the conditioning half passes unchanged, so one pass of the network inverts the layer
        return self._map_forward(weights, u, u)

    def _flow_forward(self, variables, consts, eps):
        shift, log_scale = self._final(variables[0])
        return super()._flow_forward(variables, consts, eps) * tf.exp(log_scale) + shift

    def _flow_inverse(self, variables, consts, z):
        shift, log_scale = self._final(variables[0])
        eps, logdet = super()._flow_inverse(variables, consts, (z - shift) * tf.exp(-log_scale))
        return eps, logdet - tf.reduce_sum(log_scale)

    def tfp_layer(self, flat, i):
        m, d = self.m, self.d

        def fn(x0, output_units):
            padded = tf.concat([x0, tf.zeros(tf.concat([tf.shape(x0)[:-1], [d - m]], 0), x0.dtype)], -1)
            shift, log_scale = self._shift_log_scale(self._layer_weights(flat)[i], padded)
            return shift[..., m:], log_scale[..., m:]

        return tfb.RealNVP(num_masked=m, shift_and_log_scale_fn=fn)


@cache
def _realnvp_graph(d, n_layers, hidden, activation, base="normal"):
    return _RealNVPGraph(d, n_layers, hidden, activation, base)
