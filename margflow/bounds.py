"""Maps between the prior box and R^d, with exact log-determinants.

Every estimator works in a space ``z`` reached from the physical parameters
``theta`` in two steps, both kept here so that there is one bounds transform
in the package:

1. :class:`BoxTransform` sends each coordinate from its prior range to the
   real line: two-sided ranges through the probit (default) or logit of the
   affine map ``u`` to [0, 1], plus an optional linear term ``λ (u - ½)``
   (the *blend*, see :func:`choose_blend`); one-sided ranges through a
   logarithm; unbounded coordinates unchanged.
2. :class:`Whitening` subtracts the weighted mean and multiplies by the inverse
   Cholesky factor of the weighted covariance, so the samples have zero mean
   and unit covariance.

:class:`Preprocessor` chains the two. All maps are TensorFlow float64 and
return ``log|det J|`` of the map they apply. Points exactly on a bound are
mapped to a finite (very large) value, so densities there are finite; points
outside the box are flagged by :meth:`BoxTransform.contains`.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

__all__ = [
    "parse_bounds",
    "auto_bounds",
    "ndtr",
    "ndtri",
    "choose_blend",
    "BoxTransform",
    "Whitening",
    "Preprocessor",
]

#: Smallest fraction of a range a point is pushed to before the probit/logit/log,
#: so that a point on a bound maps to a finite number (probit: -37.5).
_TINY = 1e-300
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def ndtr(y):
    """Standard normal CDF; accurate in the lower tail (``tf.math`` has only ``ndtri``)."""
    return 0.5 * tf.math.erfc(-y / math.sqrt(2.0))


# Acklam's rational approximation to the normal quantile (relative error 1.2e-9)
_ACKLAM_A = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_ACKLAM_B = (
    -5.447609879822406e01,
    1.615858368580409e02,
    -1.556989798598866e02,
    6.680131188771972e01,
    -1.328068155288572e01,
    1.0,
)
_ACKLAM_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_ACKLAM_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00, 1.0)


def _poly(coefs, x):
    out = coefs[0] * tf.ones_like(x)
    for c in coefs[1:]:
        out = out * x + c
    return out


def ndtri(p):
    """Standard normal quantile Φ^{-1}(p), float64, for p in (0, 1).

    Acklam's rational approximation refined by one Halley step on
    :func:`ndtr`: full double precision (tested against scipy down to
    p = 1e-300), built from elementary operations so that it compiles with XLA,
    whose own ``ndtri`` loses precision below p ≈ 1e-12.
    """
    p = tf.convert_to_tensor(p, tf.float64)
    tail = tf.minimum(p, 1.0 - p)
    # central region |p - 1/2| < 0.47575
    q = p - 0.5
    r = q * q
    central = q * _poly(_ACKLAM_A, r) / _poly(_ACKLAM_B, r)
    t = tf.sqrt(-2.0 * tf.math.log(tf.maximum(tail, 1e-308)))
    lower = _poly(_ACKLAM_C, t) / _poly(_ACKLAM_D, t)
    x = tf.where(tail < 0.02425, tf.where(p < 0.5, lower, -lower), central)
    # Halley step: e = Φ(x) - p, divided by the density at x
    e = tf.where(p < 0.5, ndtr(x) - p, (1.0 - p) - ndtr(-x))
    u = e * math.sqrt(2.0 * math.pi) * tf.exp(0.5 * x * x)
    return x - u / (1.0 + 0.5 * x * u)


_UNBOUNDED, _LOWER, _UPPER, _TWO_SIDED = 0, 1, 2, 3
_KINDS = ("probit", "logit")


def auto_bounds(theta, weights):
    """Prior range estimated from the samples, as margarine 1.x does.

    The estimate widens the sample range by one expected gap,
    ``((n - 2) max - min) / (n - 3)`` with ``n`` the Kish effective sample size.
    It is a guess: prefer the true prior bounds.

    Parameters
    ----------
    theta : ndarray, shape (n, d)
    weights : ndarray, shape (n,)

    Returns
    -------
    ndarray, shape (d, 2)
    """
    n = weights.sum() ** 2 / np.sum(weights**2)
    if n <= 3:
        raise ValueError(
            f'bounds="auto" needs an effective sample size above 3, got {n:.2f}; give the prior bounds explicitly'
        )
    lo, hi = theta.min(axis=0), theta.max(axis=0)
    return np.stack([((n - 2) * lo - hi) / (n - 3), ((n - 2) * hi - lo) / (n - 3)], axis=1)


def parse_bounds(bounds, params, theta=None, weights=None, columns=None):
    """Turn the user's ``bounds`` into a float64 (d, 2) array.

    Parameters
    ----------
    bounds : None, "auto", array_like of shape (d, 2), or dict
        ``None`` means unbounded. A dict maps parameter names to ``(lower, upper)``;
        parameters it does not name are unbounded. ``None`` or ``±inf`` on either
        side means that side is open. ``"auto"`` estimates the range from the
        samples (see :func:`auto_bounds`).
    params : list of str
        Parameter names, fixing the order of the rows.
    theta, weights : ndarray, optional
        Needed only for ``"auto"``.
    columns : list of str, optional
        Every column of the input; dict entries for columns not in ``params``
        are ignored (a prior dict for the whole run may be passed), while names
        that are not columns at all are an error.

    Returns
    -------
    ndarray, shape (d, 2)
        Lower and upper bound of each parameter, ``-inf``/``inf`` where open.
    """
    d = len(params)
    if bounds is None:
        out = np.tile([-np.inf, np.inf], (d, 1))
    elif isinstance(bounds, str):
        if bounds != "auto":
            raise ValueError(f'bounds must be None, "auto", a (d, 2) array or a dict; got {bounds!r}')
        if theta is None:
            raise ValueError('bounds="auto" needs the samples')
        out = auto_bounds(theta, weights)
    elif isinstance(bounds, dict):
        known = set(params) | set(columns or ())
        unknown = [k for k in bounds if k not in known]
        if unknown:
            raise ValueError(f"bounds name unknown parameters {unknown}; the parameters are {list(params)}")
        out = np.tile([-np.inf, np.inf], (d, 1))
        for i, name in enumerate(params):
            if name in bounds:
                out[i] = _pair(bounds[name], name)
    else:
        arr = np.asarray(bounds, dtype=object)
        if arr.shape != (d, 2):
            raise ValueError(f"bounds must have shape ({d}, 2) for {d} parameters, got {arr.shape}")
        out = np.array([_pair(row, name) for row, name in zip(arr, params)], dtype=float).reshape(d, 2)
    out = np.asarray(out, dtype=np.float64)
    bad = [p for p, (lo, hi) in zip(params, out) if not lo < hi]
    if bad:
        raise ValueError(f"lower bound must be below upper bound; not so for {bad}: {out.tolist()}")
    return out


def _pair(value, name):
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"bounds for {name!r} must be a pair (lower, upper), got {value!r}") from None
    lo = -np.inf if lo is None else float(lo)
    hi = np.inf if hi is None else float(hi)
    if np.isnan(lo) or np.isnan(hi):
        raise ValueError(f"bounds for {name!r} contain NaN; use None or ±inf for an open side")
    return lo, hi


#: candidate weights of the linear term, tried by :func:`choose_blend`
BLEND_GRID = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


#: largest standard deviation of a blended column in ``y``, in units of the probit/logit's tail
#: coefficient (1): a Gaussian of standard deviation s in ``y`` has a density in ``u`` that goes to
#: zero at the bounds like ``u^(1/s² - 1)`` when s < 1 and diverges when s > 1
BLEND_MAX_SD = 0.7


def choose_blend(theta, weights, bounds, kind="probit", grid=BLEND_GRID):
    """Weight ``λ`` of the linear term in the map of each two-sided parameter.

    A two-sided coordinate, scaled to ``u`` in [0, 1], goes to
    ``y = λ (u - ½) + Φ^{-1}(u)`` (or the logit). Every flow starts as a
    Gaussian in ``y``, so ``λ`` is the grid value whose Gaussian fit in ``y``,
    pulled back to ``u`` through the map, has the highest weighted
    log-likelihood of the samples. A posterior that presses on a bound keeps a
    small ``λ`` (the probit gives it room); one that sits well inside its range
    gets a large ``λ``, since the plain probit would stretch its Gaussian tails
    into heavier ones that the flow must then learn from few tail samples.

    Only values whose ``y`` has a weighted standard deviation of at most
    :data:`BLEND_MAX_SD` are tried: the larger ``λ``, the wider the samples in
    ``y`` compared with the probit's tails, and a flow whose tails in ``y``
    are wider than 1 has a density that diverges at the bounds (integrable,
    but a spurious peak for a sampler or an optimiser). This cap costs
    accuracy on posteriors a little wider than the cases below.

    Measured (MAF, 10,000 samples, KL(p‖q) on fresh draws, mean of two seeds,
    plain probit → chosen map): N(½, 0.1²) in [0, 1] 0.0029 → 0.0010;
    Beta(1, 20) 0.019 → 0.0018; Beta(2, 5) × Beta(3, 3) 0.0019 → 0.0007;
    N(½, 0.15²)² truncated to [0, 1]² 0.020 → 0.017 (without the cap:
    0.0008, with a density that diverges at the bounds). On perfect
    nested-sampling runs of a 4-D Gaussian with sd 0.11 and 0.13 in a unit
    box (10 runs), the bias of the MAF's marginal d_G drops from +0.23 ± 0.03
    to +0.05 ± 0.02 (-0.01 ± 0.02 without the cap).

    Parameters
    ----------
    theta : ndarray, shape (n, d)
    weights : ndarray, shape (n,)
    bounds : ndarray, shape (d, 2)
    kind : {"probit", "logit"}
    grid : sequence of float
        Candidate values of ``λ``.

    Returns
    -------
    ndarray, shape (d,)
        ``λ`` per parameter; 0 where the range is not two-sided.
    """
    theta = np.asarray(theta, np.float64)
    w = np.asarray(weights, np.float64) / np.sum(weights)
    bounds = np.asarray(bounds, np.float64)
    two = np.all(np.isfinite(bounds), axis=1)
    out = np.zeros(len(bounds))
    if not two.any():
        return out
    lo, hi = bounds[two, 0], bounds[two, 1]
    # the plain map (λ = 0) of the two-sided columns gives p(u) and log dp/du
    p, _ = BoxTransform(bounds[two], kind).forward(theta[:, two])
    log_dp = _log_dp_du(kind, p)
    half = (np.clip((theta[:, two] - lo) / (hi - lo), 0.0, 1.0) - 0.5) * 2.0  # 2 (u - ½)
    scores = []
    for lam in grid:
        y, ld = _blended(p, log_dp, lam, half)
        y, ld = y.numpy(), ld.numpy()
        var = w @ (y - w @ y) ** 2
        # the Gaussian fit's log-likelihood per sample, less the constant ½ log 2π + ½
        with np.errstate(divide="ignore"):
            score = w @ ld - 0.5 * np.log(var)
        scores.append(np.where((var <= BLEND_MAX_SD**2) | (lam == 0), score, -np.inf))
    scores = np.array(scores)  # (grid, columns)
    ok = np.isfinite(scores[0])
    out[np.flatnonzero(two)[ok]] = np.asarray(grid)[np.argmax(scores[:, ok], axis=0)]
    return out


class BoxTransform:
    """Coordinate-wise map from the prior box to R^d.

    Parameters
    ----------
    bounds : ndarray, shape (d, 2)
        From :func:`parse_bounds`.
    kind : {"probit", "logit"}
        Map used for two-sided ranges after the affine map to [0, 1].
    blend : None, float or array_like of shape (d,)
        Weight ``λ >= 0`` of the linear term: a two-sided coordinate goes to
        ``λ (u - ½) + Φ^{-1}(u)`` (probit) or ``λ (u - ½) + logit(u)``. ``None``
        or 0 is the plain probit/logit; ignored for other columns.

    Examples
    --------
    >>> import numpy as np
    >>> box = BoxTransform(np.array([[0.0, 1.0], [0.0, np.inf]]))
    >>> y, ld = box.forward(np.array([[0.5, 1.0]]))
    >>> np.round(y.numpy(), 6).tolist()
    [[0.0, 0.0]]
    """

    def __init__(self, bounds, kind="probit", blend=None):
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        self.bounds = np.asarray(bounds, dtype=np.float64)
        self.kind = kind
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        has_lo, has_hi = np.isfinite(lo), np.isfinite(hi)
        code = np.where(has_lo & has_hi, _TWO_SIDED, np.where(has_lo, _LOWER, np.where(has_hi, _UPPER, _UNBOUNDED)))
        lam = np.broadcast_to(np.asarray(0.0 if blend is None else blend, dtype=np.float64), lo.shape)
        if not np.all(np.isfinite(lam) & (lam >= 0)):
            raise ValueError(f"blend must be finite and >= 0 for every parameter, got {lam.tolist()}")
        #: weight of the linear term per column (0 where the column is not two-sided)
        self.blend = np.where(code == _TWO_SIDED, lam, 0.0)
        self._blend = tf.constant(self.blend)
        self._lo = tf.constant(np.where(has_lo, lo, 0.0))
        self._hi = tf.constant(np.where(has_hi, hi, 1.0))
        width = np.where(has_lo & has_hi, hi - lo, 1.0)
        self._width = tf.constant(width)
        self._log_width = tf.constant(np.log(width))
        self.bounded = bool((code != _UNBOUNDED).any())
        #: static part of the map: the kind, each column's bound type, and whether any column is blended
        self.structure = (kind, tuple(int(c) for c in code), bool(np.any(self.blend > 0)))

    def contains(self, x):
        """Boolean (n,) mask: the row lies inside the box (bounds included)."""
        x = np.asarray(x, dtype=np.float64)
        return np.all((x >= self.bounds[:, 0]) & (x <= self.bounds[:, 1]), axis=-1)

    @property
    def tensors(self):
        """The box as a tuple of tensors, the argument of :func:`box_forward`/:func:`box_inverse`."""
        return (self._lo, self._hi, self._width, self._log_width, self._blend)

    def forward(self, x):
        """Map box → R^d. Returns ``(y, log|dy/dx|)`` with shapes (n, d), (n,)."""
        return box_forward(self.structure, self.tensors, x)

    def inverse(self, y):
        """Map R^d → box. Returns ``(x, log|dx/dy|)``; x is clipped into the box."""
        return box_inverse(self.structure, self.tensors, y)


def box_forward(structure, tensors, x):
    """:meth:`BoxTransform.forward` as a pure function of the box's tensors.

    ``structure`` is :attr:`BoxTransform.structure`: the static part (kind and
    which bound types occur), so only the maps in use are built. Compiled
    functions take the tensors as arguments, so one compiled program serves
    every estimator whose box has the same structure.
    """
    x = tf.convert_to_tensor(x, tf.float64)
    kind, codes, blended = structure
    lo, hi, width, log_width, lam = tensors

    def two_sided():
        # distances to either bound as fractions of the range, kept separately
        # so that points next to the upper bound keep their precision
        f_lo = tf.clip_by_value((x - lo) / width, _TINY, 1.0)
        f_hi = tf.clip_by_value((hi - x) / width, _TINY, 1.0)
        if kind == "probit":
            p = tf.where(f_lo <= f_hi, ndtri(f_lo), -ndtri(f_hi))
        else:
            p = tf.math.log(f_lo) - tf.math.log(f_hi)
        log_dp = _log_dp_du(kind, p)
        if not blended:
            return p, log_dp - log_width
        y, log_dy = _blended(p, log_dp, lam, f_lo - f_hi)
        return y, log_dy - log_width

    def lower():
        log_s = tf.math.log(tf.maximum(x - lo, _TINY))
        return log_s, -log_s

    def upper():
        log_s = tf.math.log(tf.maximum(hi - x, _TINY))
        return -log_s, -log_s

    return _by_code(codes, x, two_sided, lower, upper)


def box_inverse(structure, tensors, y):
    """:meth:`BoxTransform.inverse` as a pure function of the box's tensors."""
    y = tf.convert_to_tensor(y, tf.float64)
    kind, codes, blended = structure
    lo, hi, width, log_width, lam = tensors
    cdf = ndtr if kind == "probit" else tf.math.sigmoid

    def two_sided():
        p = _unblend(kind, lam, y) if blended else y
        x = tf.where(p <= 0, lo + width * cdf(p), hi - width * cdf(-p))
        log_dp = _log_dp_du(kind, p)
        if blended:
            log_dp = log_dp + tf.math.log1p(lam * tf.exp(-log_dp))
        return tf.clip_by_value(x, lo, hi), log_width - log_dp

    def lower():
        return lo + tf.exp(y), y

    def upper():
        return hi - tf.exp(-y), -y

    return _by_code(codes, y, two_sided, lower, upper)


def _blended(p, log_dp, lam, two_u_minus_1):
    """``y = p + λ (u - ½)`` and ``log dy/du`` from ``p`` and ``log dp/du``."""
    return p + 0.5 * lam * two_u_minus_1, log_dp + tf.math.log1p(lam * tf.exp(-log_dp))


def _log_dp_du(kind, p):
    """``log dp/du`` of the probit or logit ``p(u)``, written in ``p`` (exact in the tails)."""
    if kind == "probit":
        return 0.5 * tf.square(p) + _HALF_LOG_2PI
    return -tf.math.log_sigmoid(p) - tf.math.log_sigmoid(-p)


#: Newton steps of :func:`_unblend`; enough for λ <= 2 ** 5 to machine precision (tested)
_NEWTON_STEPS = 12


def _unblend(kind, lam, y):
    """Solve ``p + λ (G(p) - ½) = y`` for ``p``, ``G`` the normal CDF or the sigmoid.

    The left side rises with slope between 1 and ``1 + λ G'(0)``, so Newton's
    method contracts from any start; it starts from the solution of the
    linearisation at 0, clipped to the bracket ``|p - y| <= λ / 2``.
    """
    cdf, slope0 = (ndtr, 1.0 / math.sqrt(2.0 * math.pi)) if kind == "probit" else (tf.math.sigmoid, 0.25)
    p = tf.clip_by_value(y / (1.0 + lam * slope0), y - 0.5 * lam, y + 0.5 * lam)
    for _ in range(_NEWTON_STEPS):
        # G(p) - ½ without cancellation in the tails, and G'(p) = exp(-log dp/du)
        g = tf.where(p <= 0, cdf(p) - 0.5, 0.5 - cdf(-p))
        p = p - (p + lam * g - y) / (1.0 + lam * tf.exp(-_log_dp_du(kind, p)))
    return p


def _by_code(codes, x, two_sided, lower, upper):
    """Apply to each column the map of its bound type (unbounded: identity).

    Each map is a function returning ``(value, log|det|)`` for every column;
    only the types in ``codes`` are built. Returns the values and the log-dets
    summed over columns.
    """
    maps = {_TWO_SIDED: two_sided, _LOWER: lower, _UPPER: upper, _UNBOUNDED: lambda: (x, tf.zeros_like(x))}
    present = sorted(set(codes))
    value, ld = maps[present[0]]()
    code = tf.constant(codes, tf.int32)
    for c in present[1:]:
        v, l_ = maps[c]()
        value, ld = tf.where(code == c, v, value), tf.where(code == c, l_, ld)
    return value, tf.reduce_sum(ld, axis=-1)


class Whitening:
    """Affine map ``z = L^{-1} (y - mean)`` with ``L L^T`` the weighted covariance.

    Parameters
    ----------
    mean : ndarray, shape (d,)
    chol : ndarray, shape (d, d)
        Lower-triangular Cholesky factor of the covariance.
    """

    def __init__(self, mean, chol):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.chol = np.asarray(chol, dtype=np.float64)
        self._mean = tf.constant(self.mean)
        self._chol_t = tf.constant(self.chol.T)
        self._inv_chol_t = tf.constant(np.linalg.inv(self.chol).T)
        self._log_det = tf.constant(float(np.sum(np.log(np.diag(self.chol)))), tf.float64)

    @classmethod
    def fit(cls, y, weights, names):
        """Weighted mean and covariance of ``y``; names are used in errors."""
        w = weights / weights.sum()
        mean = w @ y
        dy = y - mean
        cov = (dy * w[:, None]).T @ dy
        try:
            chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            chol = None
        # L_ii / sd_i = sqrt(1 - R_i^2), R_i the multiple correlation of parameter i
        # with the ones before it: near zero means a (near) exact linear relation
        if chol is None or not np.all(np.isfinite(chol)) or np.min(np.diag(chol) / np.sqrt(np.diag(cov))) < 1e-6:
            raise ValueError(
                f"the weighted covariance of {list(names)} is singular: some parameters are "
                "(nearly) linear combinations of others; drop the redundant ones"
            )
        return cls(mean, chol)

    @property
    def tensors(self):
        """``(mean, L^T, L^{-T}, log|L|)``, the argument of :func:`whiten`/:func:`unwhiten`."""
        return (self._mean, self._chol_t, self._inv_chol_t, self._log_det)

    def forward(self, y):
        """Returns ``(z, log|dz/dy|)``."""
        return whiten(self.tensors, y)

    def inverse(self, z):
        """Returns ``(y, log|dy/dz|)``."""
        return unwhiten(self.tensors, z)


def whiten(tensors, y):
    """:meth:`Whitening.forward` as a pure function of its tensors."""
    mean, _, inv_chol_t, log_det = tensors
    z = tf.matmul(y - mean, inv_chol_t)
    return z, tf.fill(tf.shape(z)[:1], -log_det)


def unwhiten(tensors, z):
    """:meth:`Whitening.inverse` as a pure function of its tensors."""
    mean, chol_t, _, log_det = tensors
    y = tf.matmul(z, chol_t) + mean
    return y, tf.fill(tf.shape(y)[:1], log_det)


class Preprocessor:
    """Box transform followed by whitening: ``theta → z``.

    Parameters
    ----------
    box : BoxTransform
    whitening : Whitening
    auto_blend : bool
        The box map's blend was chosen from the samples (a refit on other
        weights chooses again) rather than given.
    """

    def __init__(self, box, whitening, auto_blend=False):
        self.box = box
        self.whitening = whitening
        self.auto_blend = bool(auto_blend)

    @classmethod
    def fit(cls, theta, weights, bounds, params, kind="probit", blend="auto"):
        """Build the box map from ``bounds`` and fit the whitening to the samples.

        ``blend="auto"`` chooses the linear term of each two-sided column with
        :func:`choose_blend`; a number or (d,) array sets it.
        """
        auto = isinstance(blend, str)
        if auto:
            if blend != "auto":
                raise ValueError(f'blend must be "auto", a number or one number per parameter, got {blend!r}')
            blend = choose_blend(theta, weights, bounds, kind)
        elif np.ndim(blend) not in (0, 1) or np.size(blend) not in (1, len(params)):
            raise ValueError(f"blend must be a number or one number per parameter ({len(params)}), got {blend!r}")
        box = BoxTransform(bounds, kind, blend)
        y, _ = box.forward(theta)
        return cls(box, Whitening.fit(y.numpy(), weights, params), auto)

    @property
    def structure(self):
        """Static part of the map (kind, bound type per column): hashable, a key for compiled programs."""
        return self.box.structure

    @property
    def tensors(self):
        """Every number of the map, as tensors: the argument of :func:`preprocess`/:func:`postprocess`."""
        return (self.box.tensors, self.whitening.tensors)

    def forward(self, theta):
        """``theta → z``; returns ``(z, log|dz/dtheta|)``."""
        return preprocess(self.structure, self.tensors, theta)

    def inverse(self, z):
        """``z → theta``; returns ``(theta, log|dtheta/dz|)``."""
        return postprocess(self.structure, self.tensors, z)

    def state(self):
        """Plain arrays and strings that :meth:`from_state` rebuilds from."""
        return {
            "arrays": {
                "bounds": self.box.bounds,
                "blend": self.box.blend,
                "mean": self.whitening.mean,
                "chol": self.whitening.chol,
            },
            "config": {"kind": self.box.kind, "auto_blend": self.auto_blend},
        }

    @classmethod
    def from_state(cls, arrays, config):
        # files written before the blend existed hold the plain probit/logit, as given
        box = BoxTransform(arrays["bounds"], config["kind"], arrays.get("blend"))
        return cls(box, Whitening(arrays["mean"], arrays["chol"]), config.get("auto_blend", False))


def preprocess(structure, tensors, theta):
    """:meth:`Preprocessor.forward` as a pure function of its tensors."""
    box, white = tensors
    y, ld1 = box_forward(structure, box, theta)
    z, ld2 = whiten(white, y)
    return z, ld1 + ld2


def postprocess(structure, tensors, z):
    """:meth:`Preprocessor.inverse` as a pure function of its tensors."""
    box, white = tensors
    y, ld2 = unwhiten(white, z)
    x, ld1 = box_inverse(structure, box, y)
    return x, ld1 + ld2
