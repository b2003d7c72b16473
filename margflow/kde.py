"""Weighted Gaussian kernel density estimate in the whitened space of the flows."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import tensorflow as tf

from margflow.bounds import _TINY, ndtr, ndtri
from margflow.estimator import DensityEstimator

__all__ = ["KDE"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
#: kernel × row elements per compiled call (32 MiB per float64 temporary)
_ELEMENTS = 1 << 22
#: the "cv" bandwidth is chosen on at most this many kernels (a weighted
#: draw), then rescaled to the full effective sample size
_CV_KERNELS = 20_000
#: default rows of the "cv" bandwidth's likelihood
_CV_ROWS = 2000
#: coordinates of the base point beyond this many standard deviations are
#: solved in float64 (float32 cannot hold their tail probabilities)
_F32_EPS = 5.0


class KDE(DensityEstimator):
    """Weighted Gaussian kernel density estimate, bounded like the flows.

    The kernels sit on the samples in ``z``, the whitened image of the
    parameters (probit/logit/log of the bounds, then the weighted mean and
    Cholesky factor of the covariance removed, see :mod:`margflow.bounds`),
    with covariance ``h² I`` there: in the unbounded case this is scipy's
    ``gaussian_kde`` (kernel covariance ``h²`` times the weighted sample
    covariance). The density in the parameters carries the exact log-det of
    the preprocessing, so it is normalised over the box and ``-inf`` outside.

    ``log_prob`` is a log-sum-exp over all kernels (finite everywhere inside
    the bounds), evaluated in blocks of rows so memory stays bounded.
    ``transform`` is the Rosenblatt transform: coordinate ``k`` of ``z``
    solves ``F_k(z_k | z_<k) = u_k`` for the kernel mixture's conditional CDF,
    by safeguarded Newton iterations on all rows at once, so it is a valid
    nested-sampling prior. It runs in float32 (as the flows' networks do; a
    round trip agrees to ~1e-6 in ``u``) except for coordinates more than 5
    standard deviations into a tail, which are solved in float64.
    ``sample`` draws a kernel by weight and adds Gaussian noise.

    Parameters
    ----------
    samples : ndarray (n, d), pandas.DataFrame or anesthetic samples
    params : list of str, optional
    bounds : None, "auto", (d, 2) array or dict
    weights : array_like, optional
    bandwidth : {"scott", "silverman", "cv"} or float
        Kernel standard deviation ``h`` in whitened units. ``"scott"``:
        ``n_eff^(-1/(d+4))``; ``"silverman"``: ``(n_eff (d+2)/4)^(-1/(d+4))``,
        with ``n_eff = (Σw)²/Σw²`` the effective sample size (scipy's
        conventions); ``"cv"``: maximises the weighted leave-one-out
        log-likelihood (on at most ``cv_rows`` rows, seeded; beyond 20,000
        kernels on a weighted draw of 20,000, rescaled as ``n_eff^(-1/(d+4))``);
        a number is used as given.
    cv_rows : int
        Rows scored by the ``"cv"`` bandwidth search.
    transform : {"probit", "logit"}
    seed : int
        Seeds the ``"cv"`` subsample.

    Notes
    -----
    A kernel estimate is biased by its bandwidth: it is the true density
    convolved with the kernel. For a Gaussian target it inflates the
    variance by ``1 + h²``, which leaves ``D_KL`` nearly unbiased but biases
    the Bayesian model dimensionality low (``d / (1 + h²)²``).

    Examples
    --------
    >>> import numpy as np, margflow as mf
    >>> x = np.random.default_rng(0).normal(size=(500, 2))
    >>> kde = mf.KDE(x, params=["a", "b"], bounds=[[-10, 10], [None, None]])
    >>> kde.log_prob(x[:3]).shape, kde.transform([[0.5, 0.5]]).shape
    ((3,), (1, 2))
    """

    _dtype = tf.float64

    def __init__(
        self,
        samples,
        *,
        params=None,
        bounds=None,
        weights=None,
        bandwidth="scott",
        cv_rows=_CV_ROWS,
        transform="probit",
        blend="auto",
        seed=0,
    ):
        super().__init__(
            samples, params=params, bounds=bounds, weights=weights, transform=transform, blend=blend, seed=seed
        )
        z, w = self._place_kernels()
        h = _bandwidth(bandwidth, z, w, int(cv_rows), self.seed)
        self.config = {
            "bandwidth": bandwidth if isinstance(bandwidth, str) else float(bandwidth),
            "h": h,
            "cv_rows": int(cv_rows),
        }
        self._h = tf.constant(h, tf.float64)

    def _kernels(self):
        """Kernel centres (the positive-weight samples in z) and their normalised weights."""
        keep = self.data.weights > 0
        z, _ = self._pre.forward(self.data.theta[keep])
        w = self.data.weights[keep]
        return z.numpy(), w / w.sum()

    def _place_kernels(self):
        """Set the kernels, the program and the block size; returns ``(z, w)``."""
        z, w = self._kernels()
        self._graph = _kde_graph(self.dim, len(z))
        self._centers = tf.constant(z)
        self._log_w = tf.constant(np.log(w))
        self._w = w
        self._block = max(1, 1 << ((_ELEMENTS // len(z)).bit_length() - 1)) if len(z) < _ELEMENTS else 1
        return z, w

    @property
    def bandwidth(self):
        """Kernel standard deviation ``h`` in whitened units."""
        return float(self.config["h"])

    def _model_args(self):
        return ((self._centers, self._log_w, self._h), ())

    def sample(self, n, seed=None):
        """Draw ``n`` samples (n, d) float64: a kernel by weight, plus its Gaussian noise."""
        rng = np.random.default_rng(seed)
        n = int(n)
        idx = rng.choice(len(self._w), size=n, p=self._w)
        z = self._centers.numpy()[idx] + self.bandwidth * rng.standard_normal((n, self.dim))
        return self._pre.inverse(z)[0].numpy()

    def _settings(self):
        return {
            **super()._settings(),
            "bandwidth": self.config["bandwidth"],
            "cv_rows": self.config.get("cv_rows", _CV_ROWS),  # files written before it was kept
        }

    def _get_state(self):
        return dict(self.config), {}

    def _set_state(self, config, arrays):
        self.config = dict(config)
        self._place_kernels()
        self._h = tf.constant(float(config["h"]), tf.float64)


def _bandwidth(bandwidth, z, w, cv_rows, seed):
    n, d = z.shape
    n_eff = 1.0 / np.sum(w**2)
    if isinstance(bandwidth, str):
        rule = bandwidth.lower()
        if rule == "scott":
            return float(n_eff ** (-1.0 / (d + 4)))
        if rule == "silverman":
            return float((n_eff * (d + 2) / 4.0) ** (-1.0 / (d + 4)))
        if rule == "cv":
            return _cv_bandwidth(z, w, cv_rows, seed)
        raise ValueError(f"unknown bandwidth {bandwidth!r}; use 'scott', 'silverman', 'cv' or a positive number")
    h = float(bandwidth)
    if not (np.isfinite(h) and h > 0):
        raise ValueError(f"bandwidth must be a positive number, got {bandwidth!r}")
    return h


def _cv_bandwidth(z, w, rows, seed):
    """The ``h`` maximising the weighted leave-one-out log-likelihood of (a subsample of) the kernels."""
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    n, d = z.shape
    if n < 3:
        raise ValueError("the 'cv' bandwidth needs at least 3 samples with positive weight")
    if n > _CV_KERNELS:
        # the rows × kernels distances would not fit in memory: choose h on a
        # weighted draw of kernels, then scale it as n_eff^(-1/(d+4)) (the
        # rate of the normal-reference rules) to the full sample
        draw = np.random.default_rng(seed).choice(n, size=_CV_KERNELS, p=w)
        idx, counts = np.unique(draw, return_counts=True)
        w_sub = counts / counts.sum()
        h_sub = _cv_bandwidth(z[idx], w_sub, rows, seed)
        return float(h_sub * (np.sum(w_sub**2) / np.sum(w**2)) ** (-1.0 / (d + 4)))
    pick = np.sort(np.random.default_rng(seed).choice(n, size=min(rows, n), replace=False))
    d2 = np.sum(z[pick] ** 2, 1)[:, None] - 2 * z[pick] @ z.T + np.sum(z**2, 1)[None, :]
    d2 = np.maximum(d2, 0.0)
    d2[np.arange(len(pick)), pick] = np.inf  # leave each row's own kernel out
    log_w = np.log(w)
    score_w = w[pick] / w[pick].sum()

    def loss(log_h):
        h2 = np.exp(2 * log_h)
        # the remaining kernels' weights renormalised: 1 - w_i
        lp = logsumexp(log_w[None, :] - d2 / (2 * h2), axis=1) - np.log1p(-w[pick])
        lp -= d * (_HALF_LOG_2PI + log_h)
        return -np.sum(score_w * lp)

    scott = (1.0 / np.sum(w**2)) ** (-1.0 / (d + 4))
    res = minimize_scalar(loss, bounds=(np.log(scott / 20), np.log(scott * 3)), method="bounded")
    return float(np.exp(res.x))


class _KDEGraph:
    """The arithmetic of a KDE with ``n`` kernels in ``d`` dimensions (one per shape, cached)."""

    def __init__(self, d, n):
        self.d, self.n = d, n

    def log_prob(self, variables, consts, z):
        centers, log_w, h = variables
        d2 = (
            tf.reduce_sum(z * z, axis=1, keepdims=True)
            - 2.0 * tf.matmul(z, centers, transpose_b=True)
            + tf.reduce_sum(centers * centers, axis=1)[None, :]
        )
        d2 = tf.maximum(d2, 0.0)
        lse = tf.reduce_logsumexp(log_w[None, :] - d2 / (2.0 * h * h), axis=1)
        return lse - self.d * (_HALF_LOG_2PI + tf.math.log(h))

    def inverse(self, variables, consts, z):
        """Rosenblatt map ``z → eps`` (float64): ``eps_k = Φ^{-1}(F_k(z_k | z_<k))``."""
        centers, log_w, h = variables
        log_pi = log_w[None, :] + tf.zeros_like(z[:, :1])
        eps = []
        for k in range(self.d):
            pi = tf.nn.softmax(log_pi, axis=1)
            x = (z[:, k : k + 1] - centers[None, :, k]) / h
            lower = tf.reduce_sum(pi * ndtr(x), axis=1)
            upper = tf.reduce_sum(pi * ndtr(-x), axis=1)
            eps.append(
                tf.where(
                    lower <= 0.5,
                    ndtri(tf.clip_by_value(lower, _TINY, 1.0)),
                    -ndtri(tf.clip_by_value(upper, _TINY, 1.0)),
                )
            )
            log_pi = log_pi - 0.5 * x * x
        eps = tf.stack(eps, axis=1)
        log_base = -0.5 * tf.reduce_sum(eps * eps, axis=1) - self.d * _HALF_LOG_2PI
        return eps, self.log_prob(variables, consts, z) - log_base

    def forward(self, variables, consts, eps):
        """Inverse Rosenblatt map ``eps → z``, one coordinate after the other."""
        centers, log_w, h = variables
        c32, h32 = tf.cast(centers, tf.float32), tf.cast(h, tf.float32)
        log_pi = tf.cast(log_w, tf.float32)[None, :] + tf.zeros_like(tf.cast(eps[:, :1], tf.float32))
        out = []
        for k in range(self.d):
            log_pi = log_pi - tf.reduce_max(log_pi, axis=1, keepdims=True)
            pi = tf.exp(log_pi)
            pi = pi / tf.reduce_sum(pi, axis=1, keepdims=True)
            mu = c32[:, k]
            t = _solve(log_pi, pi, mu, h32, eps[:, k], centers[:, k], h, self._log_pi64(centers, log_w, h, out))
            out.append(t)
            x = (tf.cast(t, tf.float32)[:, None] - mu[None, :]) / h32
            log_pi = log_pi - 0.5 * x * x
        return tf.stack(out, axis=1)

    @staticmethod
    def _log_pi64(centers, log_w, h, solved):
        """A function giving the float64 conditional log-weights given the coordinates solved so far."""

        def fn():
            lp = log_w[None, :]
            for j, t in enumerate(solved):
                x = (tf.stop_gradient(t)[:, None] - centers[None, :, j]) / h
                lp = lp - 0.5 * x * x
            return lp

        return fn


def _kernel_arg(mu, h, t, sign):
    """``σ (t - μ)/h`` for every row (``t``, ``σ``) and kernel (``μ``)."""
    return sign[:, None] * (t[:, None] - mu[None, :]) / h


def _mixture_cdf(pi, mu, h, t, sign):
    """``H = Σ π Φ(σ (t - μ)/h)`` and its first two derivatives in ``t`` (``t``, ``σ`` per row)."""
    x = _kernel_arg(mu, h, t, sign)
    phi = pi * tf.exp(-0.5 * x * x)
    cdf = tf.reduce_sum(pi * ndtr(x), axis=1)
    norm = 1.0 / (h * math.sqrt(2.0 * math.pi))
    slope = sign * tf.reduce_sum(phi, axis=1) * norm
    curvature = -tf.reduce_sum(phi * x, axis=1) * norm / h
    return cdf, slope, curvature


def _newton(pi, mu, h, target, sign, t, lo, hi, tol, max_iter):
    """Safeguarded Halley iterations on ``log H(t) = log target`` (``H`` monotone, bracketed by ``[lo, hi]``).

    In log space the tails of ``H`` are nearly parabolic, so the iterations
    converge in a few steps where plain Newton on ``H`` overshoots into
    bisections; Halley's correction (third order) needs no further special
    function. Steps that leave the bracket become bisections.
    """
    tiny = np.finfo(t.dtype.as_numpy_dtype).tiny
    log_target = tf.math.log(target)

    def body(i, t, lo, hi, done):
        cdf, slope, curvature = _mixture_cdf(pi, mu, h, t, sign)
        below = cdf < target
        # H increases with t when sign > 0
        grows = sign > 0
        lo = tf.where(below == grows, t, lo)
        hi = tf.where(below == grows, hi, t)
        # g = log H - log target, g' = H'/H, g'' = H''/H - g'^2
        g = tf.math.log(tf.maximum(cdf, tiny)) - log_target
        g1 = slope / cdf
        g2 = curvature / cdf - g1 * g1
        newton = g / g1
        denom = 1.0 - 0.5 * newton * g2 / g1
        step = tf.where(denom > 0.5, newton / denom, newton)
        new = t - step
        # a step leaving the bracket becomes a bisection; rows already solved stay
        bad = ~tf.math.is_finite(new) | (new < lo) | (new > hi)
        new = tf.where(bad, 0.5 * (lo + hi), new)
        new = tf.where(done, t, new)
        return i + 1, new, lo, hi, done | (tf.abs(new - t) <= tol * h)

    def cond(i, t, lo, hi, done):
        return (i < max_iter) & ~tf.reduce_all(done)

    _, t, _, _, _ = tf.while_loop(
        cond, body, (tf.constant(0), t, lo, hi, tf.zeros_like(t, tf.bool)), maximum_iterations=max_iter
    )
    return t


def _solve(log_pi, pi, mu, h, eps, mu64, h64, log_pi64):
    """Coordinate ``t`` with ``F(t | earlier) = Φ(eps)`` for each row; float64 out, differentiable."""
    f32 = tf.float32
    e32 = tf.clip_by_value(tf.cast(eps, f32), -_F32_EPS, _F32_EPS)
    # solve in the tail the point lies in: H(t) = Σ π Φ(σ(t - μ)/h) = Φ(-|eps|)
    sign = tf.where(e32 <= 0, 1.0, -1.0)
    target = ndtr(-tf.abs(e32))
    # start from the Gaussian with the mixture's mean and variance
    mean = tf.reduce_sum(pi * mu[None, :], axis=1)
    var = h * h + tf.maximum(tf.reduce_sum(pi * tf.square(mu[None, :] - mean[:, None]), axis=1), 0.0)
    t0 = mean + tf.sqrt(var) * e32
    # the mixture's CDF lies between those of its outermost kernels
    shift = -sign * h * tf.abs(e32)
    lo = tf.reduce_min(mu) + shift - h
    hi = tf.reduce_max(mu) + shift + h
    t0 = tf.clip_by_value(t0, lo, hi)
    # stop once a step is below 1e-3 h: Newton converges quadratically, so the
    # iterate is then float32-exact (round trips agree to ~2e-7 in u)
    t = tf.stop_gradient(_newton(pi, mu, h, target, sign, t0, lo, hi, 1e-2, 60))
    t = tf.cast(t, tf.float64)

    # coordinates far in a tail: float64, in log space, from the float32 answer
    far = tf.abs(eps) > _F32_EPS

    def refine():
        pi64 = tf.nn.softmax(log_pi64(), axis=1)
        sign64 = tf.where(eps <= 0, tf.constant(1.0, tf.float64), -1.0)
        target64 = ndtr(-tf.abs(eps))
        shift64 = -sign64 * h64 * tf.abs(eps)
        lo64 = tf.reduce_min(mu64) + shift64 - h64
        hi64 = tf.reduce_max(mu64) + shift64 + h64
        start = tf.clip_by_value(t, lo64, hi64)
        t64 = _newton(pi64, mu64, h64, target64, sign64, start, lo64, hi64, 1e-12, 200)
        return tf.where(far, tf.stop_gradient(t64), t)

    t = tf.cond(tf.reduce_any(far), refine, lambda: t)
    return _implicit(t, eps, log_pi, mu, h)


@tf.custom_gradient
def _implicit(t, eps, log_pi, mu, h):
    """``t`` unchanged; its gradient is the implicit one of ``H(t; π(log_pi)) = Φ(-|eps|)``.

    Nothing is computed unless the result is differentiated (the uncompiled
    program in the tests of the log-det).
    """

    def grad(upstream):
        f32 = tf.float32
        tc = tf.cast(t, f32)
        sign = tf.where(eps <= 0, tf.constant(1.0, f32), -1.0)
        pi = tf.nn.softmax(log_pi, axis=1)
        cdf, slope, _ = _mixture_cdf(pi, mu, h, tc, sign)
        g = tf.cast(upstream, f32) / slope
        # dt/deps = φ(eps) / f(t), f the conditional density, in either tail
        phi_eps = tf.exp(-0.5 * eps * eps) / math.sqrt(2 * math.pi)
        d_eps = tf.cast(upstream, tf.float64) * phi_eps / tf.cast(tf.abs(slope), tf.float64)
        d_log_pi = -g[:, None] * pi * (ndtr(_kernel_arg(mu, h, tc, sign)) - cdf[:, None])
        return None, d_eps, d_log_pi, None, None

    return tf.identity(t), grad


@cache
def _kde_graph(d, n):
    return _KDEGraph(d, n)
