"""Marginal Kullback–Leibler divergence and Bayesian model dimensionality, with error bars.

For parameters θ with posterior P(θ) (the estimator) and prior π(θ),

- ``D_KL = ⟨log P(θ)/π(θ)⟩_P``, the information gained about θ alone;
- ``d_G = 2 Var_P[log P(θ)/π(θ)]``, the Bayesian model dimensionality of θ
  (Handley & Lemos 2019): the number of parameters the data constrain;
- with the evidence Z, ``logL_P = ⟨log L(θ)⟩_P = D_KL + log Z`` for the
  nuisance-free likelihood ``L(θ) = P(θ) Z / π(θ)``.

The averages run over the weighted posterior samples the estimator was fit to
(or other samples of the same parameters). :func:`marginal_stats` returns draws
of the statistics, as ``NestedSamples.stats(nsamples)`` does in anesthetic,
so ``.mean()``, ``.std()`` and anesthetic's plots work on them.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from margflow.data import load_samples
from margflow.densities import log_density
from margflow.estimator import ensemble_members

__all__ = ["marginal_stats"]

#: weight draws handled at once (bounds the (n, chunk) matrices in memory)
_CHUNK = 64

_LABELS = {
    "logZ": r"$\ln\mathcal{Z}$",
    "D_KL": r"$\mathcal{D}_\mathrm{KL}$",
    "logL_P": r"$\langle\ln\mathcal{L}\rangle_\mathcal{P}$",
    "d_G": r"$d_\mathrm{G}$",
}


def marginal_stats(
    estimator, prior=None, nsamples=500, *, samples=None, logZ=None, ensemble=None, seed=None, progress=True
):
    """Draws of the marginal D_KL and d_G of the estimator's parameters (and logZ, logL_P when Z is known).

    Parameters
    ----------
    estimator : DensityEstimator
        The marginal posterior P(θ) of the parameters.
    prior : None, bounds, DensityEstimator, scipy distribution(s) or callable
        The marginal prior π(θ); see :func:`margflow.densities.log_density`.
        Default: uniform on the estimator's (finite) bounds.
    nsamples : int
        Number of draws.
    samples : ndarray, DataFrame or anesthetic samples, optional
        Posterior samples to average over; default the samples the estimator
        was fit to (with their anesthetic origin, when it had one).
    logZ : float, optional
        The evidence, when the samples do not carry it (nested-sampling input
        does; a model file keeps its value).
    ensemble : int or list of DensityEstimator, optional
        Further fits of the same posterior: a number ``n`` makes ``n``
        bootstrap refits (:meth:`~margflow.DensityEstimator.bootstrap`), or
        give fits of your own (other seeds, architectures). Bootstrap refits
        of the samples averaged over replace the estimator: draw ``j`` uses
        refit ``j % M`` averaged under that refit's own reweighting. Other
        fits join it: draw ``j`` uses ``[estimator, *ensemble][j % M]`` with
        fresh weights. Either way the spread of the draws includes the
        fit-to-fit scatter and their mean is the ensemble's average.
    seed : int, optional
        Seeds the weight draws, anesthetic's nested-sampling ones included (and
        the bootstrap refits).
    progress : bool
        Progress bar of the bootstrap refits.

    Returns
    -------
    anesthetic.samples.Samples
        ``nsamples`` rows; columns ``D_KL`` and ``d_G``, and ``logZ`` and
        ``logL_P`` when the evidence is known; TeX labels as anesthetic's
        ``NestedSamples.stats``.

    Notes
    -----
    What the spread of the draws covers:

    - **Monte Carlo error of the samples**, always: every draw reweights the
      samples by independent Exp(1) factors (the Bayesian bootstrap), so the
      spread is that of a weighted average with the samples' Kish effective
      sample size. It treats the samples as independent: for a correlated MCMC
      chain, thin it first or the error bars are too small.
    - **Nested-sampling weight uncertainty**, when the samples are an
      anesthetic ``NestedSamples``: each draw also uses one of anesthetic's
      simulated log-weights (``logw(nsamples)``), so ``logZ`` and the weights
      vary together as in ``NestedSamples.stats``.
    - **Estimator scatter**, only with ``ensemble``. Bootstrap refits give a
      full bootstrap of fit and average together: the scatter of a fit to a
      finite sample (and its training noise) with its correlation to the
      Monte Carlo error, which adding the two in quadrature would overstate
      (twice, for a KDE's d_G). Fits of your own (seeds) add in quadrature.
      Flows fit to an effective sample size of a few thousand scatter in
      ``d_G`` as much as the Monte Carlo error, so use ``ensemble=16`` there
      (see benchmarks/RESULTS-stats.md); it costs that many fits, and the
      std of 16 values is known to ~18%. Measured at Kish ESS ≈ 2,000 over
      255 data sets (d = 2, 5, 10; benchmarks/RESULTS-coverage.md): with
      ``ensemble=16`` the ±1σ bars cover the truth in 68% of them for both
      D_KL and d_G (63% at d = 2, 78% at d = 10); without, d_G is covered
      in only about half of them.
    - Not covered: a bias the estimator shares across fits (too smooth a
      density lowers d_G; see benchmarks/RESULTS-stats.md for each
      estimator's bias). A known one: when the posterior reaches within a few
      standard deviations of a prior bound, the flows' probit box map gives
      them too-thin tails there, and with nested-sampling input (many
      low-weight tail points) the MAF's d_G comes out high (+9% for a
      Gaussian with sd 0.1 of the box width, 500 live points); D_KL is not
      affected.
    """
    nsamples = int(nsamples)
    if nsamples < 1:
        raise ValueError(f"nsamples must be a positive integer, got {nsamples}")
    data = estimator.data if samples is None else load_samples(samples, params=estimator.params)
    ensemble = ensemble_members(estimator, ensemble, seed=seed, progress=progress)
    # bootstrap refits of the data averaged over carry their reweighting: the draws are theirs alone
    members, own = ensemble, [getattr(m, "_bootstrap_of", None) is data for m in ensemble]
    if not (members and all(own)):
        members, own = [estimator, *members], [False, *own]
    log_prior = log_density(prior, estimator)

    rows = np.flatnonzero(data.weights > 0)
    theta = data.theta[rows]
    log_pi = log_prior(theta)
    if not np.all(np.isfinite(log_pi)):
        bad = int(np.sum(~np.isfinite(log_pi)))
        raise ValueError(
            f"{bad} of {len(theta)} posterior samples lie where the prior density is zero or not finite; "
            "the prior must cover the posterior (check its bounds)"
        )
    f = np.stack([m.log_prob(theta) for m in members]) - log_pi
    if not np.all(np.isfinite(f)):
        bad = int(np.sum(~np.isfinite(f).all(axis=0)))
        raise ValueError(
            f"the estimator's log-density is not finite at {bad} posterior samples "
            "(samples outside its bounds?); fit it on these samples or give matching bounds"
        )

    rng = np.random.default_rng(seed)
    ns_logw, ns_logZ = _nested_weights(data, rows, nsamples, rng)
    if logZ is None:
        logZ = data.logZ
    d_kl, d_g = np.empty(nsamples), np.empty(nsamples)
    log_w0 = np.log(data.weights[rows])
    log_boot = [np.log(m.bootstrap_weights[rows]) if o else None for m, o in zip(members, own)]
    for start in range(0, nsamples, _CHUNK):
        cols = np.arange(start, min(start + _CHUNK, nsamples))
        base = log_w0[:, None] if ns_logw is None else ns_logw[:, cols]
        log_e = np.log(rng.standard_exponential((len(rows), len(cols))))
        for c, j in enumerate(cols):
            if own[j % len(members)]:
                log_e[:, c] = log_boot[j % len(members)]
        logw = base + log_e
        fj = f[cols % len(members)].T  # (n, chunk): the member of each draw
        d_kl[cols], d_g[cols] = _weighted_mean_dG(logw, fj)

    if ns_logZ is None and logZ is not None:
        ns_logZ = np.full(nsamples, float(logZ))
    return _frame(d_kl, d_g, ns_logZ)


def _weighted_mean_dG(logw, f):
    """Per column of the (n, m) log-weights: the weighted mean of ``f`` and twice its weighted variance."""
    w = np.exp(logw - logw.max(axis=0))
    w /= w.sum(axis=0)
    mean = np.sum(w * f, axis=0)
    return mean, 2.0 * np.sum(w * (f - mean) ** 2, axis=0)


def _frame(d_kl, d_g, logZ=None):
    """The draws as anesthetic ``Samples`` with the columns and labels of ``NestedSamples.stats``."""
    from anesthetic.samples import Samples

    out = Samples(index=np.arange(len(d_kl)))
    if logZ is not None:
        out["logZ"] = logZ
        out.set_label("logZ", _LABELS["logZ"])
    out["D_KL"] = d_kl
    out.set_label("D_KL", _LABELS["D_KL"])
    if logZ is not None:
        out["logL_P"] = np.asarray(logZ) + d_kl
        out.set_label("logL_P", _LABELS["logL_P"])
    out["d_G"] = d_g
    out.set_label("d_G", _LABELS["d_G"])
    return out


def _nested_weights(data, rows, nsamples, rng):
    """anesthetic's simulated log-weights of the used rows and the matching logZ draws, or (None, None).

    anesthetic draws them from numpy's global generator: it is seeded here from ``rng`` for the call
    and then put back, so a seed of :func:`marginal_stats` fixes these draws too."""
    if data.source is None or data.logZ is None:  # the data layer sets logZ for nested-sampling input only
        return None, None
    state = np.random.get_state()  # noqa: NPY002 (anesthetic's generator)
    np.random.seed(rng.integers(2**32))  # noqa: NPY002
    try:
        logw = np.asarray(data.source.logw(nsamples), dtype=np.float64)  # (rows of the run, nsamples)
    finally:
        np.random.set_state(state)  # noqa: NPY002
    logZ = logsumexp(logw, axis=0)
    kept = np.flatnonzero(data.kept) if data.kept is not None else np.arange(len(logw))
    return logw[kept[rows]], logZ
