"""Input intake: numpy, pandas or anesthetic samples → validated arrays.

This is the one validation path of the package: every estimator calls
:func:`load_samples`, and every error about the input is raised here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from margflow.bounds import parse_bounds

__all__ = ["SampleData", "load_samples", "min_samples"]

#: Columns of anesthetic samples that are bookkeeping, not parameters.
_NON_PARAMETERS = {"logL", "logL_birth", "nlive", "chain", "logw", "weights", "weight", "logP", "logpi"}


def min_samples(dim):
    """Fewest positive-weight samples an estimator of ``dim`` parameters is fit to."""
    return max(20, 10 * dim)


@dataclass
class SampleData:
    """Validated samples of the chosen parameters.

    Attributes
    ----------
    theta : ndarray, shape (n, d), float64
    weights : ndarray, shape (n,), float64, non-negative, not all zero
    params : list of str
    bounds : ndarray, shape (d, 2), float64; ``±inf`` where open
    logZ : float or None
        The evidence of a nested-sampling run, when the input carried one.
    source : object or None
        The anesthetic samples the data came from (kept in memory, not saved).
    kept : ndarray of bool or None
        One entry per input row: True where the row was kept (rows with a
        non-finite value are dropped), so per-row inputs such as cluster
        labels can follow them; None after loading a model file.
    """

    theta: np.ndarray
    weights: np.ndarray
    params: list
    bounds: np.ndarray
    logZ: float | None = None
    source: object = None
    kept: np.ndarray | None = None

    @property
    def ess(self):
        """Kish effective sample size of the weights."""
        return kish_ess(self.weights)


def kish_ess(weights):
    """Kish's effective sample size ``(Σw)² / Σw²`` of non-negative weights, of any scale."""
    w = np.asarray(weights, dtype=np.float64)
    return float(w.sum() ** 2 / np.sum(w * w))


def _is_anesthetic(obj):
    return type(obj).__module__.startswith("anesthetic") and hasattr(obj, "get_weights")


def _column_names(frame):
    cols = frame.columns
    names = cols.get_level_values(0) if getattr(cols, "nlevels", 1) > 1 else cols
    return [str(c) for c in names]


def load_samples(samples, params=None, weights=None, bounds=None):
    """Validate samples and return a :class:`SampleData`.

    Parameters
    ----------
    samples : ndarray (n, d), pandas.DataFrame, or anesthetic NestedSamples/MCMCSamples
        The posterior samples. Rows with a non-finite value in a chosen
        parameter are dropped with a warning that says how many.
    params : list of str, optional
        Columns to use, by name. Default: every column (for anesthetic input
        every parameter column, bookkeeping columns such as ``logL`` excluded);
        for a numpy array the names default to ``theta0, theta1, ...``.
    weights : array_like (n,), optional
        Sample weights; default equal. For anesthetic input the weights come
        from the samples and must not be given again.
    bounds : None, "auto", (d, 2) array or dict
        Prior bounds, see :func:`margflow.bounds.parse_bounds`.

    Returns
    -------
    SampleData

    Raises
    ------
    ValueError
        Naming the problem: bad weights, length mismatch, unknown parameters,
        too few samples, a constant parameter, samples outside the bounds.

    Examples
    --------
    >>> import numpy as np
    >>> data = load_samples(np.random.default_rng(0).normal(size=(100, 2)), params=["a", "b"])
    >>> data.theta.shape, data.params
    ((100, 2), ['a', 'b'])
    """
    logZ, source, names = None, None, None
    if _is_anesthetic(samples):
        if weights is not None:
            raise ValueError("weights come from the anesthetic samples; do not pass weights as well")
        source = samples
        names = _column_names(samples)
        weights = np.asarray(samples.get_weights(), dtype=np.float64)
        if hasattr(samples, "logZ") and "logL_birth" in names:
            logZ = float(samples.logZ())
        if params is None:
            params = [n for n in names if n not in _NON_PARAMETERS]
        theta = _select(np.asarray(samples.to_numpy(), dtype=np.float64), names, params)
    elif hasattr(samples, "columns") and hasattr(samples, "to_numpy"):
        names = _column_names(samples)
        if params is None:
            params = names
        theta = _select(np.asarray(samples.to_numpy(), dtype=np.float64), names, params)
    else:
        try:
            theta = np.asarray(samples, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"samples must be a numeric (n, d) array, a DataFrame or anesthetic samples: {err}"
            ) from None
        if theta.ndim == 1:
            theta = theta[:, None]
        if theta.ndim != 2:
            raise ValueError(f"samples must be a 2-D array (n, d), got shape {theta.shape}")
        if params is None:
            params = [f"theta{i}" for i in range(theta.shape[1])]
        params = [str(p) for p in params]
        if len(params) != theta.shape[1]:
            raise ValueError(f"{len(params)} parameter names given for {theta.shape[1]} columns of samples")
    params = [str(p) for p in params]
    if len(set(params)) != len(params):
        raise ValueError(f"parameter names repeat: {params}")

    n, d = theta.shape
    weights = _check_weights(weights, n)

    finite = np.all(np.isfinite(theta), axis=1)
    if not finite.all():
        dropped = int((~finite).sum())
        warnings.warn(
            f"dropped {dropped} of {n} samples with non-finite values in {params}",
            stacklevel=3,
        )
        theta, weights = theta[finite], weights[finite]
        if not weights.sum() > 0:
            raise ValueError("every sample with positive weight has a non-finite value; nothing left to fit")

    positive = weights > 0
    need = min_samples(d)
    if positive.sum() < need:
        raise ValueError(
            f"{int(positive.sum())} samples with positive weight for {d} parameters; "
            f"need at least {need} to fit a density estimator"
        )
    spread = theta[positive].max(axis=0) - theta[positive].min(axis=0)
    constant = [p for p, s in zip(params, spread) if s == 0]
    if constant:
        raise ValueError(
            f"parameters {constant} are constant over the weighted samples; a density cannot be fit "
            "to a fixed value: leave them out of params"
        )

    box = parse_bounds(bounds, params, theta[positive], weights[positive], columns=names)
    below = theta < box[:, 0]
    above = theta > box[:, 1]
    outside = below | above
    if outside.any():
        parts = [
            f"{p}: {int(outside[:, i].sum())} outside [{box[i, 0]:g}, {box[i, 1]:g}]"
            for i, p in enumerate(params)
            if outside[:, i].any()
        ]
        raise ValueError(
            "samples lie outside the given bounds (" + "; ".join(parts) + "); "
            "check the bounds are the prior's, or pass bounds=None"
        )
    return SampleData(theta=theta, weights=weights, params=params, bounds=box, logZ=logZ, source=source, kept=finite)


def _select(values, names, params):
    params = [str(p) for p in params]
    unknown = [p for p in params if p not in names]
    if unknown:
        raise ValueError(f"unknown parameters {unknown}; the samples have columns {names}")
    return values[:, [names.index(p) for p in params]]


def _check_weights(weights, n):
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape[0] != n:
        raise ValueError(f"{w.shape[0]} weights for {n} samples; give one weight per sample")
    nan = int(np.isnan(w).sum())
    if nan:
        raise ValueError(f"weights contain {nan} NaN values; weights must be finite and >= 0")
    inf = int(np.isinf(w).sum())
    if inf:
        raise ValueError(f"weights contain {inf} infinite values; weights must be finite and >= 0")
    neg = int((w < 0).sum())
    if neg:
        raise ValueError(f"weights contain {neg} negative values; weights must be >= 0")
    if not w.sum() > 0:
        raise ValueError("all weights are zero; at least some samples must have positive weight")
    return w
