"""Importance-sampling evidence with any margflow estimator as the proposal.

``Z = ∫ L(θ) π(θ) dθ = E_q[L π / q]``: draw ``N`` points from the proposal
``q`` (optionally the defensive mixture ``(1 - λ) q + λ π``), weight each by
``w = L π / q`` and average over **all N trials**, the ones the prior or the
likelihood rejects (weight 0) included; leaving them out of ``N`` biases Z
high. The relative error of the average is ``√(1/ESS - 1/N)`` with ``ESS``
Kish's effective sample size of the weights (delta method), which is also the
error of log Z.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from margflow.data import kish_ess
from margflow.densities import UniformBox, _Estimator, _Scipy, evaluate_rows, log_density

__all__ = ["importance_evidence", "reweight", "EvidenceResult"]


@dataclass
class EvidenceResult:
    """What :func:`importance_evidence` returns.

    Attributes
    ----------
    logZ, logZ_err : float
        The evidence estimate and its standard error, ``√(1/ESS - 1/N)``.
    ess : float
        Kish effective sample size of the importance weights (out of ``n``).
    n : int
        Number of trials, every one counted.
    n_zero : int
        Trials with zero weight (outside the prior's support or ``L = 0``).
    samples : ndarray (m, d)
        The trials with positive weight.
    weights : ndarray (m,)
        Their importance weights, normalised to sum to one: weighted
        posterior samples.
    params : list of str
    log_likelihood : ndarray (m,)
        ``log L`` at the samples.
    """

    logZ: float
    logZ_err: float
    ess: float
    n: int
    n_zero: int
    samples: np.ndarray
    weights: np.ndarray
    params: list
    log_likelihood: np.ndarray

    def stats(self, nsamples=500, seed=None):
        """Draws of ``logZ``, ``D_KL``, ``logL_P`` and ``d_G`` of this posterior, as
        :func:`margflow.marginal_stats` returns them.

        ``D_KL = ⟨log L⟩_P - log Z`` and ``d_G = 2 Var_P[log L]``. Each draw
        reweights all ``n`` trials by Exp(1) factors (the Bayesian bootstrap),
        so logZ, the weights and the statistics vary together and the spread
        of ``logZ`` matches ``logZ_err``.
        """
        from margflow.stats import _CHUNK, _frame, _weighted_mean_dG

        rng = np.random.default_rng(seed)
        nsamples = int(nsamples)
        # unnormalised weights of the positive trials; the zero-weight ones only enter through N
        log_w = np.log(self.weights) + self.logZ + np.log(self.n)
        ll = self.log_likelihood
        logZ, d_kl, d_g = np.empty(nsamples), np.empty(nsamples), np.empty(nsamples)
        for start in range(0, nsamples, _CHUNK):
            cols = slice(start, min(start + _CHUNK, nsamples))
            # column j: every trial's factor in draw j; the zero-weight trials enter only through the sum
            g = rng.standard_exponential((cols.stop - start, self.n)).T
            lw = log_w[:, None] + np.log(g[: len(log_w)])
            logZ[cols] = logsumexp(lw, axis=0) - np.log(g.sum(axis=0))
            mean, d_g[cols] = _weighted_mean_dG(lw, ll[:, None])
            d_kl[cols] = mean - logZ[cols]
        return _frame(d_kl, d_g, logZ)

    @property
    def ess_fraction(self):
        """Effective sample size as a fraction of the trials, ``⟨w⟩² / ⟨w²⟩`` in [0, 1]
        (``1/⟨(p/q)²⟩_q`` for normalised p): 1 when the proposal is the target."""
        return self.ess / self.n

    def expect(self, fn):
        """Reweighted expectation ``Σ w f(θ) / Σ w`` and its standard error.

        Parameters
        ----------
        fn : callable
            Takes the (m, d) samples and returns m values, or (m, k) for k
            functions at once.

        Returns
        -------
        mean, err : float or ndarray (k,)
            The error is the delta-method error of a self-normalised
            importance average, ``√(Σ w² (f - mean)²)`` with the weights
            normalised to one.
        """
        f = np.asarray(fn(self.samples), dtype=np.float64)
        m = len(self.samples)
        if f.shape[:1] != (m,) or f.ndim > 2:
            raise ValueError(f"fn must return {m} values or an ({m}, k) array for the {m} samples, got {f.shape}")
        w = self.weights.reshape((m,) + (1,) * (f.ndim - 1))
        mean = np.sum(w * f, axis=0)
        return mean, np.sqrt(np.sum(w**2 * (f - mean) ** 2, axis=0))

    def resample(self, m, seed=None):
        """``m`` equal-weight samples drawn from the weighted samples (with replacement)."""
        rng = np.random.default_rng(seed)
        return self.samples[rng.choice(len(self.samples), size=int(m), p=self.weights)]

    def to_anesthetic(self):
        """The weighted posterior samples as an ``anesthetic.Samples``."""
        from anesthetic import Samples

        return Samples(self.samples, columns=self.params, weights=self.weights)

    def __repr__(self):
        return (
            f"EvidenceResult(logZ={self.logZ:.4f} ± {self.logZ_err:.4f}, ess={self.ess:.1f} of n={self.n}, "
            f"zero-weight trials={self.n_zero})"
        )


def importance_evidence(
    log_likelihood,
    proposal,
    prior=None,
    n=10_000,
    *,
    defensive=0.0,
    vectorized=True,
    batch_size=4096,
    seed=None,
    progress=True,
):
    """Estimate log Z by importance sampling from ``proposal``.

    Parameters
    ----------
    log_likelihood : callable
        ``log L(θ)``; with ``vectorized`` it takes (b, d) rows and returns b
        values, otherwise one (d,) point at a time.
    proposal : DensityEstimator
        Any margflow estimator (``sample`` and ``log_prob``), typically one
        fit to posterior samples; its support must cover the posterior.
    prior : None, bounds, DensityEstimator, scipy distribution(s) or callable
        π(θ), as for :func:`margflow.marginal_stats` (default uniform on the
        proposal's bounds). The defensive mixture also draws from it, so then
        it must be a box, an estimator or a scipy distribution.
    n : int
        Number of trials.
    defensive : float
        Fraction ``λ`` of trials drawn from the prior (a defensive mixture):
        bounds the weights where the proposal's tails are too light, at the
        cost of ESS.
    vectorized : bool
    batch_size : int
        Trials per likelihood call (and per progress-bar step).
    seed : int, optional
    progress : bool
        Show a progress bar over the trials.

    Returns
    -------
    EvidenceResult
    """
    from tqdm.auto import tqdm

    n = int(n)
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    lam = float(defensive)
    if not 0.0 <= lam < 1.0:
        raise ValueError(f"defensive must be in [0, 1), got {defensive}")
    log_prior = log_density(prior, proposal)
    if lam > 0 and not isinstance(log_prior, UniformBox | _Estimator | _Scipy):
        raise ValueError("a defensive mixture draws from the prior: give it as bounds, an estimator or scipy")
    _check_cover(log_prior, proposal)
    rng = np.random.default_rng(seed)
    from_prior = rng.uniform(size=n) < lam
    theta = np.empty((n, proposal.dim))
    k = int(from_prior.sum())
    theta[~from_prior] = proposal.sample(n - k, seed=int(rng.integers(2**31)))
    if k:
        theta[from_prior] = _prior_draws(log_prior, k, rng)

    log_w, log_l = np.empty(n), np.empty(n)
    bar = tqdm(total=n, disable=not progress, desc="importance sampling", unit="pt")
    try:
        for start in range(0, n, int(batch_size)):
            x = theta[start : start + int(batch_size)]
            lpi = log_prior(x)
            lq = proposal.log_prob(x)
            if lam > 0:
                lq = np.logaddexp(np.log1p(-lam) + lq, np.log(lam) + lpi)
            ok = np.isfinite(lpi)
            ll = np.full(len(x), -np.inf)
            if ok.any():
                vals = evaluate_rows(log_likelihood, x[ok], vectorized)
                if np.isnan(vals).any() or np.isposinf(vals).any():
                    raise ValueError("the log-likelihood returned NaN or +inf; it must be finite or -inf")
                ll[ok] = vals
            lw = np.where(np.isfinite(ll), ll + lpi - lq, -np.inf)
            log_w[start : start + len(x)] = lw
            log_l[start : start + len(x)] = ll
            bar.update(len(x))
    finally:
        bar.close()

    positive = np.isfinite(log_w)
    if not positive.any():
        raise ValueError("every trial has zero weight: the proposal misses the region where L·π > 0")
    logZ = float(logsumexp(log_w[positive]) - np.log(n))
    w = np.exp(log_w[positive] - log_w[positive].max())
    ess = kish_ess(w)
    err = float(np.sqrt(max(1.0 / ess - 1.0 / n, 0.0)))
    return EvidenceResult(
        logZ=logZ,
        logZ_err=err,
        ess=ess,
        n=n,
        n_zero=int(n - positive.sum()),
        samples=theta[positive],
        weights=w / w.sum(),
        params=list(proposal.params),
        log_likelihood=log_l[positive],
    )


def reweight(estimator, log_target, n=10_000, *, vectorized=True, batch_size=4096, seed=None, progress=True):
    """Importance weights ``p/q`` that correct an estimator ``q`` toward a target density ``p``.

    Draws ``n`` points from the estimator and weights each by ``p̃(θ) / q(θ)``
    for an unnormalised target log-density ``log p̃`` (for example a
    posterior's ``log L + log π``). The weighted samples are then samples of
    ``p``, whatever the estimator's residual error, as long as its support
    covers ``p``'s.

    Parameters
    ----------
    estimator : DensityEstimator
        The proposal ``q``.
    log_target : callable
        ``log p̃(θ)``, unnormalised; ``-inf`` where ``p`` vanishes.
    n, vectorized, batch_size, seed, progress
        As for :func:`importance_evidence`.

    Returns
    -------
    EvidenceResult
        ``weights`` (normalised), ``ess`` and ``ess_fraction`` (1 when ``q``
        is ``p``), :meth:`~EvidenceResult.expect` for reweighted expectations
        with errors, :meth:`~EvidenceResult.resample` for equal-weight samples,
        and ``logZ ± logZ_err``, the log of ``∫ p̃`` over the estimator's
        bounds.

    Examples
    --------
    >>> import numpy as np, margflow as mf
    >>> x = np.random.default_rng(0).normal(0.0, 1.3, size=(2000, 2))
    >>> q = mf.KDE(x, bounds=[[-8, 8], [-8, 8]])
    >>> res = mf.reweight(q, lambda t: -0.5 * np.sum(t**2, axis=1), n=4000, seed=1, progress=False)
    >>> mean, err = res.expect(lambda t: t[:, 0] ** 2)
    >>> bool(abs(mean - 1.0) < 4 * err), 0 < res.ess_fraction <= 1
    (True, True)
    """
    return importance_evidence(
        log_target,
        estimator,
        prior=_Support(estimator),
        n=n,
        vectorized=vectorized,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
    )


class _Support:
    """A flat, unnormalised "prior": ``log π = 0`` inside the bounds, ``-inf`` outside, so the importance
    weights of :func:`importance_evidence` are ``p̃ / q``."""

    def __init__(self, estimator):
        self.box = estimator._pre.box

    def __call__(self, theta):
        return np.where(self.box.contains(theta), 0.0, -np.inf)


def _prior_draws(log_prior, k, rng):
    if isinstance(log_prior, UniformBox):
        b = log_prior.bounds
        return b[:, 0] + (b[:, 1] - b[:, 0]) * rng.uniform(size=(k, len(b)))
    if isinstance(log_prior, _Estimator):
        return log_prior.estimator.sample(k, seed=int(rng.integers(2**31)))
    d = log_prior.dim
    if isinstance(log_prior.dists, list):
        return np.column_stack([dist.rvs(size=k, random_state=rng) for dist in log_prior.dists])
    return np.asarray(log_prior.dists.rvs(size=k, random_state=rng), dtype=np.float64).reshape(k, d)


def _check_cover(log_prior, proposal):
    """A proposal whose bounds cut into a box prior misses part of the evidence: say so."""
    if isinstance(log_prior, UniformBox):
        pb, qb = log_prior.bounds, proposal.bounds
        if np.any(qb[:, 0] > pb[:, 0]) or np.any(qb[:, 1] < pb[:, 1]):
            warnings.warn(
                "the proposal's bounds lie inside the prior box, so it never draws part of the prior: "
                "log Z misses the likelihood there (fit the proposal with the prior's bounds)",
                stacklevel=3,
            )
