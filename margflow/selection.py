"""Model selection: a grid of flows, each trained on one part of the samples and scored on the rest.

Every grid point is an independent job, a picklable description of the data
and the settings, so any executor with a ``map`` method runs them:
``concurrent.futures`` pools (``mp_context=multiprocessing.get_context("spawn")``
for processes, since TensorFlow does not survive ``fork``), ``mpi4py.futures``
on a cluster, or a dask or ray client.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from margflow.data import load_samples
from margflow.flows.train import split_indices

__all__ = ["select_model", "ModelSelection", "histogram_kl"]

#: grid keys that go to ``fit``; every other key but ``architecture`` goes to the constructor
_FIT_KEYS = ("epochs", "batch_size", "learning_rate", "patience", "validation_fraction", "clip_norm", "ema_decay")
_SCORES = ("nll", "hist_kl")


@dataclass
class ModelSelection:
    """What :func:`select_model` returns.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per grid point, best first: the settings, ``score`` (lower is
        better), ``score_err`` (its standard error over the held-out samples,
        for ``"nll"``; NaN for ``"hist_kl"``), the epochs run and the fit time.
    best : FlowEstimator
        The best grid point's flow, trained on the training part.
    score : str
    """

    table: object
    best: object
    score: str


def select_model(
    samples,
    grid,
    *,
    params=None,
    bounds=None,
    weights=None,
    score="nll",
    holdout=0.2,
    executor=None,
    n_draws=20_000,
    bins=20,
    seed=0,
):
    """Train a flow at every point of a grid of settings and rank them on held-out samples.

    Parameters
    ----------
    samples, params, bounds, weights
        As for the estimators.
    grid : dict of lists
        ``architecture`` (``"MAF"``, ``"RealNVP"``, ``"SplineFlow"``), fit
        settings (``batch_size``, ``learning_rate``, ``epochs``, ``patience``,
        ...) and constructor settings (``n_layers``, ``hidden``, ...); every
        combination is one grid point. Missing keys keep the defaults
        (architecture ``"MAF"``).
    score : {"nll", "hist_kl"}
        ``"nll"``: the weighted negative log-likelihood of the held-out
        samples (with its standard error, so ties are visible);
        ``"hist_kl"``: the mean of KL(p‖q) between histograms of every 1-D and
        2-D marginal of the held-out samples and of ``n_draws`` draws of the
        flow (Roch & Shen's metric; see :func:`histogram_kl`).
    holdout : float
        Fraction of the samples held out for scoring (seeded); each flow also
        takes its own validation split of the rest for early stopping.
    executor : object with ``map``, optional
        Runs the grid points; default the built-in ``map`` (one after another).
    n_draws, bins : int
        Flow draws and bins per axis of ``"hist_kl"``.
    seed : int
        Seeds the split, the flows and their draws.

    Returns
    -------
    ModelSelection
    """
    if score not in _SCORES:
        raise ValueError(f"score must be one of {_SCORES}, got {score!r}")
    if not isinstance(grid, dict) or not grid:
        raise ValueError("grid must be a non-empty dict of lists, e.g. {'architecture': ['MAF', 'RealNVP']}")
    lists = {k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in grid.items()}
    empty = [k for k, v in lists.items() if not v]
    if empty:
        raise ValueError(f"grid entries {empty} are empty")
    data = load_samples(samples, params=params, weights=weights, bounds=bounds)
    i_train, i_test = split_indices(len(data.theta), holdout, seed)
    if holdout <= 0 or not data.weights[i_test].sum() > 0:
        raise ValueError("holdout must leave held-out samples with positive total weight")
    keys = list(lists)
    jobs = []
    for values in itertools.product(*(lists[k] for k in keys)):
        setting = dict(zip(keys, values))
        jobs.append(
            {
                "setting": setting,
                "train": (data.theta[i_train], data.weights[i_train]),
                "test": (data.theta[i_test], data.weights[i_test]),
                "params": list(data.params),
                "bounds": data.bounds,
                "score": score,
                "n_draws": int(n_draws),
                "bins": int(bins),
                "seed": int(seed),
            }
        )
    for job in jobs:
        _check(job["setting"])
    results = list((executor.map if executor is not None else map)(_fit_and_score, jobs))
    import pandas as pd

    from margflow.io import from_bytes

    rows = [
        {**_display(job["setting"]), **{k: v for k, v in r.items() if k != "model"}} for job, r in zip(jobs, results)
    ]
    order = np.argsort([r["score"] for r in results], kind="stable")
    table = pd.DataFrame([rows[i] for i in order]).reset_index(drop=True)
    return ModelSelection(table=table, best=from_bytes(results[order[0]]["model"]), score=score)


def _check(setting):
    from margflow.flows import MAF, RealNVP, SplineFlow

    arch = setting.get("architecture", "MAF")
    known = {"MAF": MAF, "RealNVP": RealNVP, "SplineFlow": SplineFlow}
    if arch not in known:
        raise ValueError(f"architecture must be one of {sorted(known)}, got {arch!r}")
    return known[arch]


def _display(setting):
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in setting.items()}


def _fit_and_score(job):
    """One grid point: build, train on the training part, score on the held-out part (picklable)."""
    import time

    from margflow.io import to_bytes

    setting = dict(job["setting"])
    cls = _check(setting)
    setting.pop("architecture", None)
    fit_kw = {k: setting.pop(k) for k in list(setting) if k in _FIT_KEYS}
    theta, w = job["train"]
    flow = cls(theta, params=job["params"], bounds=job["bounds"], weights=w, seed=job["seed"], **setting)
    t0 = time.perf_counter()
    history = flow.fit(progress=False, **fit_kw)
    fit_s = time.perf_counter() - t0
    x, wt = job["test"]
    if job["score"] == "nll":
        wn = wt / wt.sum()
        lq = flow.log_prob(x)
        value = -float(wn @ lq)
        ess = 1.0 / np.sum(wn**2)
        err = float(np.sqrt(wn @ (lq + value) ** 2 / ess)) if np.all(np.isfinite(lq)) else np.nan
    else:
        value = histogram_kl(x, wt, flow.sample(job["n_draws"], seed=job["seed"] + 1), bins=job["bins"])
        err = np.nan
    return {
        "score": value,
        "score_err": err,
        "epochs": history.epochs,
        "best_epoch": history.best_epoch,
        "fit_s": fit_s,
        "model": to_bytes(flow),
    }


def histogram_kl(x, weights, draws, bins=20, *, draw_weights=None):
    """Mean KL(p‖q) over every 1-D and 2-D marginal between histograms of ``x`` (weighted, p) and
    ``draws`` (q), on a common grid spanning both; empty q-bins get half a (Kish effective) count so
    the KL stays finite.

    Parameters
    ----------
    x : ndarray (n, d)
    weights : ndarray (n,)
    draws : ndarray (m, d)
    bins : int
        Bins per axis.
    draw_weights : ndarray (m,), optional
        Weights of ``draws`` (default equal).

    Returns
    -------
    float
    """
    x, draws = np.asarray(x, float), np.asarray(draws, float)
    d = x.shape[1]
    # q's weights scaled so that a bin's weight counts in effective samples (equal weights: counts)
    wq = np.ones(len(draws)) if draw_weights is None else np.asarray(draw_weights, float)
    wq = wq * wq.sum() / np.sum(wq**2)
    both = np.concatenate([x, draws])
    edges = [np.linspace(both[:, j].min(), both[:, j].max(), bins + 1) for j in range(d)]
    kls = []
    for cols in [(j,) for j in range(d)] + list(itertools.combinations(range(d), 2)):
        e = [edges[j] for j in cols]
        p, _ = np.histogramdd(x[:, cols], bins=e, weights=weights)
        q, _ = np.histogramdd(draws[:, cols], bins=e, weights=wq)
        p = p.ravel() / p.sum()
        q = np.maximum(q.ravel(), 0.5)
        q = q / q.sum()
        keep = p > 0
        kls.append(float(np.sum(p[keep] * np.log(p[keep] / q[keep]))))
    return float(np.mean(kls))
