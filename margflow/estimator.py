"""The density-estimator interface shared by every margflow estimator.

A subclass models the density of ``z``, the whitened image of the parameters
in R^d (see :mod:`margflow.bounds`), as a bijection from a standard normal
``eps``. It supplies ``self._graph``, an object with three pure TensorFlow
functions of its weights,

- ``log_prob(variables, consts, z)``: log-density of ``z``;
- ``forward(variables, consts, eps)``: ``eps → z``;
- ``inverse(variables, consts, z)``: ``z → eps`` and its log-det;

the weights as ``_model_args() = (variables, consts)`` and its float type as
``_dtype``. This class turns them into the numpy float64 API (``log_prob``,
``sample``, ``transform``, ``inverse_transform``) with bounds handled once.

Every map is one XLA-compiled program per model structure (the ``_graph``
object, the box structure and the float type): the weights, the preprocessing and
the box enter as arguments, so estimators of the same architecture share the
compiled code. (The probit uses margflow's own :func:`~margflow.bounds.ndtri`:
XLA's CPU ``ndtri`` returns ``-inf`` below 1e-20 and is off by 1e-6 relative
at 1e-12.) Inputs are cut into blocks of at most ``_BLOCK`` rows and each
block padded to a power of two, so a program is compiled for at most
``log2(_BLOCK) + 1`` shapes in a process and a one-point call runs a one-row
program (about 0.4 ms).
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import tensorflow as tf

from margflow import _xla
from margflow.bounds import _TINY, Preprocessor, ndtr, ndtri, postprocess, preprocess
from margflow.data import SampleData, load_samples

__all__ = ["DensityEstimator"]

#: rows per compiled call; batches are padded to the next power of two below it
_BLOCK = 1 << 15


def _ndtri_symmetric(u):
    """Φ^{-1}(u) that keeps its precision next to 1 and is finite at 0 and 1."""
    lo = tf.clip_by_value(u, _TINY, 1.0)
    hi = tf.clip_by_value(1.0 - u, _TINY, 1.0)
    return tf.where(u <= 0.5, ndtri(lo), -ndtri(hi))


class _Program:
    """A map ``fn(*args, x)`` traced once for ``x`` of shape ``[None, d]``.

    It runs XLA-compiled (compiled once per row count); if this TensorFlow
    build cannot compile it, it warns once and runs as a plain graph.
    """

    def __init__(self, fn, name):
        self.name = name
        self._fn = {jit: tf.function(fn, autograph=False, jit_compile=jit) for jit in (True, False)}
        self._concrete = {}
        self.jit = True

    def _get(self, args, d):
        key = (self.jit, d)
        if key not in self._concrete:
            spec = tf.TensorSpec([None, d], tf.float64)
            self._concrete[key] = self._fn[self.jit].get_concrete_function(*args, spec)
        return self._concrete[key]

    def __call__(self, args, x):
        try:
            return self._get(args, x.shape[1])(*args, x)
        except _xla.ERRORS as exc:
            if not self.jit or not _xla.is_compile_failure(exc):
                raise
            warnings.warn(
                f"XLA compilation of {self.name} failed ({type(exc).__name__}); running it uncompiled", stacklevel=4
            )
            self.jit = False
            return self._get(args, x.shape[1])(*args, x)

    @property
    def plain(self):
        """The uncompiled program (differentiable everywhere; XLA cannot take
        gradients through the sampling loop)."""
        return self._fn[False]

    def tracing_count(self):
        return sum(f.experimental_get_tracing_count() for f in self._fn.values())


@lru_cache(maxsize=64)
def _programs(graph, structure, dtype):
    """The four maps of the numpy API for one model structure."""
    f64 = tf.float64

    def log_prob(model, pre, support, x):
        lo, hi, mid = support
        # ±inf in an open direction is outside the support too
        ok = (x >= lo) & (x <= hi) & tf.math.is_finite(x)
        inside = tf.reduce_all(ok, axis=-1)
        # outside points are evaluated at an interior point, then masked
        z, ld = preprocess(structure, pre, tf.where(ok, x, mid + tf.zeros_like(x)))
        lp = tf.cast(graph.log_prob(*model, tf.cast(z, dtype)), f64) + ld
        return tf.where(inside, lp, tf.constant(-np.inf, f64))

    def from_base(model, pre, support, eps):
        z = tf.cast(graph.forward(*model, tf.cast(eps, dtype)), f64)
        return postprocess(structure, pre, z)[0]

    def transform(model, pre, support, u):
        return from_base(model, pre, support, _ndtri_symmetric(u))

    def inverse_transform(model, pre, support, x):
        eps, _ = graph.inverse(*model, tf.cast(preprocess(structure, pre, x)[0], dtype))
        return ndtr(tf.cast(eps, f64))

    # a flow on a Student-t base: the flow alone, between its base point and the parameters (the
    # base's Rosenblatt map runs outside XLA: see FlowEstimator)
    def from_base_point(model, pre, support, x):
        z = tf.cast(graph._flow_forward(*model, tf.cast(x, dtype)), f64)
        return postprocess(structure, pre, z)[0]

    def to_base_point(model, pre, support, theta):
        x, _ = graph._flow_inverse(*model, tf.cast(preprocess(structure, pre, theta)[0], dtype))
        return tf.cast(x, f64)

    fns = (log_prob, from_base, transform, inverse_transform, from_base_point, to_base_point)
    return {fn.__name__: _Program(fn, fn.__name__) for fn in fns}


def ensemble_members(estimator, ensemble, *, seed=None, progress=True):
    """Resolve an ``ensemble`` argument: refits of ``estimator`` made now, or refits given.

    Parameters
    ----------
    estimator : DensityEstimator or any object with ``params`` (and ``bootstrap`` for an int)
    ensemble : None, int or sequence of estimators
        ``None`` or 0: none; ``n``: ``estimator.bootstrap(n)``; a sequence:
        refits made before (over the same parameters), reused.

    Returns
    -------
    list
    """
    if ensemble is None:
        return []
    if isinstance(ensemble, int | np.integer):
        if ensemble < 0:
            raise ValueError(f"ensemble must be a number of refits >= 0 or a list of refits, got {ensemble}")
        return estimator.bootstrap(int(ensemble), seed=seed, progress=progress) if ensemble else []
    members = list(ensemble)
    for m in members:
        if list(getattr(m, "params", [])) != list(estimator.params):
            raise ValueError(
                f"ensemble member parameters {getattr(m, 'params', None)} differ from the estimator's "
                f"{list(estimator.params)}; make refits with estimator.bootstrap(n)"
            )
    return members


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
    blend : "auto", float or array_like of shape (d,)
        Weight of a linear term added to that map (see
        :func:`margflow.bounds.choose_blend`); ``"auto"`` chooses it per
        parameter from the samples, 0 keeps the plain probit/logit.
    seed : int
    """

    #: every concrete estimator, by class name, for :func:`margflow.load`
    registry: dict = {}

    _dtype = tf.float64
    #: most rows per compiled call (a subclass may lower it to bound memory)
    _block = _BLOCK

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        DensityEstimator.registry[cls.__name__] = cls

    def __init__(self, samples, *, params=None, bounds=None, weights=None, transform="probit", blend="auto", seed=0):
        data = load_samples(samples, params=params, weights=weights, bounds=bounds)
        positive = data.weights > 0
        pre = Preprocessor.fit(data.theta[positive], data.weights[positive], data.bounds, data.params, transform, blend)
        self._setup(data, pre, seed)

    def _setup(self, data: SampleData, pre: Preprocessor, seed):
        self.data = data
        self.seed = int(seed)
        self._pre = pre
        self.history = None
        #: a JSON-serialisable dict of the user's, written to and read from the model file
        self.notes = {}
        # an interior point per parameter: evaluated in place of outside points,
        # and the padding row of inputs that must lie inside the bounds
        b = np.where(np.isfinite(self.bounds), self.bounds, 0.0)
        has = np.isfinite(self.bounds)
        mid = np.where(has.all(1), b.mean(1), np.where(has[:, 0], b[:, 0] + 1, np.where(has[:, 1], b[:, 1] - 1, 0.0)))
        self._interior = mid
        self._support = (tf.constant(self.bounds[:, 0]), tf.constant(self.bounds[:, 1]), tf.constant(mid))

    # -- what subclasses provide ------------------------------------------------
    def _model_args(self):
        """``(variables, consts)`` of the functions of ``self._graph``."""
        raise NotImplementedError

    # -- compiled maps ----------------------------------------------------------
    def _run(self, name, x, pad):
        """Apply program ``name`` to the float64 rows ``x``, block by block.

        Each block is padded to a power of two rows with copies of its first
        row, so the compiled program sees few distinct shapes; an empty input
        runs one ``pad`` row (a row valid for the map) and returns none.
        """
        program = _programs(self._graph, self._pre.structure, self._dtype)[name]
        args = (self._model_args(), self._pre.tensors, self._support)
        n = len(x)
        if n == 0:
            x = np.asarray(pad, np.float64)[None, :]
        out = []
        for i in range(0, len(x), self._block):
            block = x[i : i + self._block]
            m = len(block)
            size = 1 << (m - 1).bit_length()
            if size > m:
                block = np.concatenate([block, np.broadcast_to(block[:1], (size - m, self.dim))])
            out.append(program(args, tf.constant(block)).numpy()[:m])
        return np.concatenate(out)[:n]

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

    def _unit_rows(self, u):
        """``u`` as validated rows of the unit hypercube (the input of ``transform``)."""
        u = self._rows(u, "u")
        if (u < 0).any() or (u > 1).any():
            raise ValueError("u must lie in the unit hypercube [0, 1]^d")
        return u

    def _inside_rows(self, theta):
        """``theta`` as validated rows inside the bounds (the input of ``inverse_transform``)."""
        x = self._rows(theta, "theta")
        outside = ~self._pre.box.contains(x)
        if outside.any():
            raise ValueError(
                f"{int(outside.sum())} points lie outside the bounds; inverse_transform needs points inside"
            )
        return x

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
        out = self._run("log_prob", x, self._interior)
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
        return self._run("from_base", eps, np.zeros(self.dim))

    def transform(self, u):
        """Map points of the unit hypercube to parameters, row by row.

        Deterministic and order-preserving, so it serves as the prior transform
        of a nested sampler (dynesty, UltraNest, PolyChord): uniform ``u``
        gives samples of the estimator.

        Parameters
        ----------
        u : array_like, shape (n, d) or (d,), values in [0, 1]

        Returns
        -------
        ndarray
            Shape (n, d), or (d,) for one point of shape (d,), as nested
            samplers' prior transforms take and return.
        """
        single = np.ndim(u) == 1
        out = self._transform(self._unit_rows(u))
        return out[0] if single else out

    def _transform(self, u):
        """``transform`` of validated (n, d) rows of the unit hypercube."""
        return self._run("transform", u, np.full(self.dim, 0.5))

    def inverse_transform(self, theta):
        """Inverse of :meth:`transform`: parameters → unit hypercube."""
        return self._run("inverse_transform", self._inside_rows(theta), self._interior)

    def bootstrap(self, n=8, *, seed=None, progress=True):
        """``n`` refits of this estimator on Bayesian-bootstrap reweightings of its samples.

        Refit ``b`` uses the same samples, settings, bounds and training
        settings, with every weight multiplied by an independent Exp(1) draw
        (the Bayesian bootstrap: a resample of the samples with continuous
        counts) and a fresh seed (initial weights, validation split,
        shuffling). The scatter of the refits is the estimator's fit-to-fit
        uncertainty from the finite sample and from training; pass them as
        ``ensemble`` to :func:`margflow.marginal_stats`.

        Parameters
        ----------
        n : int
            Number of refits.
        seed : int, optional
            Seeds the reweightings and the refits' seeds; default the
            estimator's seed.
        progress : bool
            One progress bar over the refits.

        Returns
        -------
        list of DensityEstimator
            Of this estimator's class. A :class:`~margflow.PiecewiseMAF` keeps
            its cluster labels (the clustering is not redone).
        """
        from tqdm.auto import tqdm

        n = int(n)
        if n < 1:
            raise ValueError(f"n must be a positive integer, got {n}")
        fit_kwargs = self._fit_kwargs()
        rng = np.random.default_rng([self.seed if seed is None else int(seed), 0x5EED])
        bar = tqdm(total=n, disable=not progress, desc="bootstrap", unit="fit")
        out = []
        try:
            for _ in range(n):
                member_seed = int(rng.integers(2**31))
                e = rng.standard_exponential(len(self.data.weights))
                est = type(self)(
                    self.data.theta,
                    params=self.params,
                    bounds=self.bounds,
                    weights=self.data.weights * e,
                    seed=member_seed,
                    **self._settings(),
                )
                est.bootstrap_weights, est._bootstrap_of = e, self.data
                if fit_kwargs is not None:
                    est.fit(**fit_kwargs, seed=member_seed, progress=False)
                out.append(est)
                bar.update()
        finally:
            bar.close()
        return out

    def save(self, path):
        """Write the estimator to one file (see :func:`margflow.load`)."""
        from margflow.io import save

        save(self, path)

    def __repr__(self):
        trained = "untrained" if self.history is None else f"trained {self.history.epochs} epochs"
        return f"{type(self).__name__}(params={self.params}, dim={self.dim}, {trained})"

    def __reduce__(self):
        """Pickle through the model file (TensorFlow objects are rebuilt on unpickling), so
        estimators and the likelihoods and priors holding them go to process pools."""
        from margflow.io import from_bytes, to_bytes

        return from_bytes, (to_bytes(self),)

    # -- rebuilding (bootstrap) --------------------------------------------------
    def _settings(self):
        """Constructor keywords, besides samples, params, bounds, weights and seed, that rebuild this estimator."""
        # a blend chosen from the samples is chosen again on the refit's weights, like the whitening
        blend = "auto" if self._pre.auto_blend else self._pre.box.blend
        return {"transform": self._pre.box.kind, "blend": blend}

    def _fit_kwargs(self):
        """Keywords of the ``fit`` call a rebuilt estimator needs (without seed), or None for no training."""
        return None

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
