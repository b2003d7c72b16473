"""Rational-quadratic spline autoregressive flow (neural spline flow, Durkan et al. 2019)."""

from __future__ import annotations

from functools import cache

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from margflow.flows.maf import _LOG_SCALE_CLAMP, MAF, _MAFGraph

__all__ = ["SplineFlow"]

tfb = tfp.bijectors

#: smallest bin width and height (fraction of the spline's range) and knot slope
_MIN_BIN = 1e-3
_MIN_SLOPE = 1e-3


class SplineFlow(MAF):
    """Autoregressive flow of monotone rational-quadratic splines on weighted samples in a bounded box.

    Each of ``n_layers`` layers maps every parameter through a monotone
    rational-quadratic spline (TFP's ``RationalQuadraticSpline``) of
    ``n_bins`` bins on ``[-bound, bound]``, the identity outside it, followed
    by an affine map (shift and log-scale, as in :class:`MAF`); the spline's
    bin widths, heights and interior knot slopes and the affine parameters of
    parameter ``i`` come from a MADE of the parameters before it (TFP's
    ``MaskedAutoregressiveFlow`` with a ``bijector_fn``), with a fixed
    permutation between layers. A spline layer can split a marginal into
    several modes, where an affine layer can only shift and scale it.

    The network's output layer starts at zero, which gives equal bins, unit
    slopes and no shift or scale: the untrained flow is the identity, so the
    estimator starts as the weighted Gaussian fit, as :class:`MAF` does.
    Density, sampling and ``transform`` run margflow's fused functions of the
    flat weight vector (tested equal to the TFP chain).

    Measured on 10,000 samples with the shared training defaults (two seeds):
    on two concentric rings KL(p‖q) 0.045–0.062 nats against the MAF's
    0.16–0.30; on the curved banana of the foundation benchmark 0.010 against
    the MAF's 0.004 (10,000 samples), falling as 1/N to 0.0047 at 30,000 and
    0.0017 at 10^5 (the MAF: 0.0009): the spline is limited by the scatter of
    its fit to finite samples, not by its shape. A smaller, smooth network
    scatters less: ``n_layers=3, hidden=(16, 16), n_bins=4,
    activation="gelu"`` reaches 0.0028 on the banana (mean of four seeds,
    against 0.0104 at the defaults and the MAF's 0.0044), and an
    :class:`~margflow.Ensemble` of four 0.0024. Weight decay, other batch
    sizes, rates, validation fractions, EMA decays, depths and widths did
    not help further: what is left is the scatter of a flexible fit to
    8,000 training rows (benchmarks/RESULTS-table1.md).

    Parameters
    ----------
    samples, params, bounds, weights, transform, seed
        As for :class:`MAF`.
    n_layers : int
        Number of spline layers.
    hidden : tuple of int
        Hidden units of each MADE.
    activation : str
    n_bins : int
        Bins per spline.
    bound : float
        Half-width of the spline's range in whitened units (the samples are
        standardised, so the default 5 covers all but a fraction 6e-7 of a
        Gaussian's mass); the map is the identity beyond it.
    base : {"normal", "student_t"}
        As for :class:`MAF`.

    Examples
    --------
    >>> import numpy as np, margflow as mf
    >>> x = np.random.default_rng(0).normal(size=(500, 2))
    >>> flow = mf.SplineFlow(x, n_layers=2, hidden=(16, 16), n_bins=4)
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
        n_layers=4,
        hidden=(32, 32),
        activation="tanh",
        n_bins=8,
        bound=5.0,
        base="normal",
        transform="probit",
        blend="auto",
        seed=0,
    ):
        super(MAF, self).__init__(
            samples, params=params, bounds=bounds, weights=weights, transform=transform, blend=blend, seed=seed
        )
        if int(n_bins) != n_bins or n_bins < 2:
            raise ValueError(f"n_bins must be an integer of at least 2, got {n_bins!r}")
        if not np.isfinite(bound) or bound <= 0:
            raise ValueError(f"bound must be a positive number, got {bound!r}")
        self._init_architecture(n_layers, hidden, activation, base=base, n_bins=int(n_bins), bound=float(bound))

    def _settings(self):
        return {**super()._settings(), "n_bins": self.config["n_bins"], "bound": self.config["bound"]}

    def _make_graph(self, config):
        return _spline_graph(
            self.dim,
            config["n_layers"],
            tuple(config["hidden"]),
            config["activation"],
            config["n_bins"],
            config["bound"],
            config.get("base", "normal"),
        )


class _SplineGraph(_MAFGraph):
    """The arithmetic of one spline-flow architecture (see :class:`_MAFGraph`)."""

    def __init__(self, d, n_layers, hidden, activation, n_bins, bound, base="normal"):
        self.n_bins, self.bound = int(n_bins), float(bound)
        self.n_outputs = 3 * self.n_bins + 1
        super().__init__(d, n_layers, hidden, activation, base)
        # an unconstrained slope of 0 gives slope 1: the zero network is the identity
        self._slope_shift = float(np.log(np.expm1(1.0 - _MIN_SLOPE)))

    def _spline_params(self, weights, cond):
        """Bin widths and heights (summing to ``2 * bound``) and interior knot slopes, each (n, d, ·)."""
        out = self.made(weights, cond)
        k, span = self.n_bins, 2.0 * self.bound
        widths = span * (_MIN_BIN + (1.0 - _MIN_BIN * k) * tf.nn.softmax(out[..., :k], axis=-1))
        heights = span * (_MIN_BIN + (1.0 - _MIN_BIN * k) * tf.nn.softmax(out[..., k : 2 * k], axis=-1))
        slopes = _MIN_SLOPE + tf.nn.softplus(out[..., 2 * k : 3 * k - 1] + self._slope_shift)
        shift = out[..., 3 * k - 1]
        log_scale = _LOG_SCALE_CLAMP * tf.tanh(out[..., 3 * k] / _LOG_SCALE_CLAMP)
        return (widths, heights, slopes), (shift, log_scale)

    def _knots(self, widths, heights, slopes):
        b = self.bound
        pad = tf.zeros_like(widths[..., :1])
        xk = tf.concat([pad, tf.cumsum(widths, axis=-1)], axis=-1) - b
        yk = tf.concat([pad, tf.cumsum(heights, axis=-1)], axis=-1) - b
        one = tf.ones_like(slopes[..., :1])
        return xk, yk, tf.concat([one, slopes, one], axis=-1)

    def _bin(self, knots, v):
        """Per element: the bin of ``v`` (clipped into range) and its knot values."""
        b = self.bound
        vc = tf.clip_by_value(v, -b, b)
        idx = tf.reduce_sum(tf.cast(vc[..., None] >= knots[..., 1:-1], tf.int32), axis=-1)[..., None]
        return vc, idx

    @staticmethod
    def _take(t, idx):
        return tf.gather(t, idx, batch_dims=2)[..., 0]

    def _segment(self, spline, v, by_output):
        xk, yk, dk = self._knots(*spline)
        vc, idx = self._bin(yk if by_output else xk, v)
        x0, y0, d0 = self._take(xk, idx), self._take(yk, idx), self._take(dk, idx)
        w = self._take(xk, idx + 1) - x0
        h = self._take(yk, idx + 1) - y0
        d1 = self._take(dk, idx + 1)
        return vc, x0, y0, d0, d1, w, h

    @staticmethod
    def _log_slope(xi, s, d0, d1):
        """``log dy/dx`` of a rational-quadratic segment at relative position ``xi``."""
        t = xi * (1.0 - xi)
        num = d1 * xi * xi + 2.0 * s * t + d0 * (1.0 - xi) ** 2
        return 2.0 * tf.math.log(s) + tf.math.log(num) - 2.0 * tf.math.log(s + (d1 + d0 - 2.0 * s) * t)

    def _map_forward(self, weights, cond, u):
        spline, (shift, log_scale) = self._spline_params(weights, cond)
        xc, x0, y0, d0, d1, w, h = self._segment(spline, u, by_output=False)
        s = h / w
        xi = (xc - x0) / w
        t = xi * (1.0 - xi)
        y = y0 + h * (s * xi * xi + d0 * t) / (s + (d1 + d0 - 2.0 * s) * t)
        inside = tf.abs(u) < self.bound
        return tf.where(inside, y, u) * tf.exp(log_scale) + shift

    def _map_inverse(self, weights, z):
        spline, (shift, log_scale) = self._spline_params(weights, z)
        y = (z - shift) * tf.exp(-log_scale)
        yc, x0, y0, d0, d1, w, h = self._segment(spline, y, by_output=True)
        s = h / w
        dy = yc - y0
        c2 = d1 + d0 - 2.0 * s
        a = h * (s - d0) + dy * c2
        b = h * d0 - dy * c2
        c = -s * dy
        disc = tf.maximum(b * b - 4.0 * a * c, 0.0)
        xi = tf.clip_by_value(2.0 * c / (-b - tf.sqrt(disc)), 0.0, 1.0)
        x = x0 + xi * w
        inside = tf.abs(y) < self.bound
        logdet = tf.where(inside, -self._log_slope(xi, s, d0, d1), tf.zeros_like(y))
        return tf.where(inside, x, y), tf.reduce_sum(logdet - log_scale, axis=-1)

    def tfp_layer(self, flat, i):
        def fn(y):
            (widths, heights, slopes), (shift, log_scale) = self._spline_params(self._layer_weights(flat)[i], y)
            spline = tfb.RationalQuadraticSpline(widths, heights, slopes, range_min=-self.bound)
            return tfb.Chain([tfb.Shift(shift), tfb.Scale(log_scale=log_scale), spline])

        return tfb.MaskedAutoregressiveFlow(bijector_fn=fn)


@cache
def _spline_graph(d, n_layers, hidden, activation, n_bins, bound, base="normal"):
    return _SplineGraph(d, n_layers, hidden, activation, n_bins, bound, base)
