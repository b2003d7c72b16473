"""margarine 1.x's ``calculate``: marginal statistics and importance-sampling integrals."""

from __future__ import annotations

import numpy as np

from margflow.compat.margarine._common import Compat, as_numpy, check_int, unwrap
from margflow.estimator import DensityEstimator
from margflow.evidence import importance_evidence
from margflow.stats import marginal_stats

__all__ = ["calculate"]

#: percentiles reported as the "Lower Bound" and "Upper Bound" of each statistic: the central 68% interval
INTERVAL = (15.865525393145708, 84.13447460685429)


class calculate:  # noqa: N801 -- margarine's name
    """margarine 1.x's ``calculate(de, prior_de=None)``.

    Parameters
    ----------
    de : MAF, KDE or clusterMAF of this module (or any margflow estimator)
        The marginal posterior.
    prior_de : optional
        The marginal prior as a density estimator; default uniform on the
        posterior estimator's box ``[theta_min, theta_max]``.
    nsamples : int
        Number of draws behind each statistic (margflow's keyword).
    ensemble : int, optional
        Refits whose scatter joins the error bars; see
        :func:`margflow.marginal_stats`.
    seed : int, optional
    """

    def __init__(self, de, prior_de=None, *, nsamples=500, ensemble=None, seed=None):
        self.de = de
        if isinstance(de, Compat):
            if de.estimator is None:
                raise RuntimeError(f"the {type(de).__name__} is not built yet: call generate_kde() first")
            self.estimator = de.estimator
        elif isinstance(de, DensityEstimator):
            self.estimator = de
        else:
            raise TypeError(
                f"calculate() needs a MAF, KDE or clusterMAF (or a margflow estimator), got {type(de).__name__}"
            )
        self.prior_de = prior_de
        self.nsamples = check_int("nsamples", nsamples)
        self.ensemble, self.seed = ensemble, seed
        self.draws = None

    def statistics(self):
        """The marginal KL divergence and Bayesian model dimensionality, with margarine's keys.

        Returns
        -------
        dict
            ``"KL Divergence"`` and ``"BMD"``: the means of
            :func:`margflow.marginal_stats`'s draws; ``"KL Lower Bound"``,
            ``"KL Upper Bound"``, ``"BMD Lower Bound"``, ``"BMD Upper
            Bound"``: the 15.9th and 84.1th percentiles of those draws, a 68%
            interval that covers the samples' Monte Carlo error (and the
            nested-sampling weights' for anesthetic ``NestedSamples`` input,
            and the refits' with ``ensemble``). margarine's bounds were the
            spread of three estimates and covered none of these. All the
            draws stay in ``self.draws``.
        """
        self.draws = marginal_stats(
            self.estimator,
            prior=self.de._prior(self.prior_de) if isinstance(self.de, Compat) else unwrap(self.prior_de),
            nsamples=self.nsamples,
            ensemble=self.ensemble,
            seed=self.seed,
            progress=False,
        )
        out = {}
        for key, col in (("KL", "D_KL"), ("BMD", "d_G")):
            x = np.asarray(self.draws[col], dtype=np.float64)
            lo, hi = np.percentile(x, INTERVAL)
            out["KL Divergence" if key == "KL" else "BMD"] = float(x.mean())
            out[f"{key} Lower Bound"] = float(lo)
            out[f"{key} Upper Bound"] = float(hi)
        return out

    def integrate(self, loglikelihood, prior_pdf, batch_size=1000, sample_size=10000, logzero=-1e30):
        """Importance-sampling integral ``Z = ∫ L π dθ`` with the estimator as the proposal.

        Parameters
        ----------
        loglikelihood : callable
            ``log L`` of one (d,) point.
        prior_pdf : callable
            ``log π`` of (n, d) points (a log-density, as in margarine).
        batch_size, sample_size : int
            Points per call of ``prior_pdf`` and number of trials.
        logzero : float
            ``log L`` below this counts as zero likelihood.

        Returns
        -------
        dict
            margarine's keys: ``x``, ``y`` (log L), ``weights`` (``L π / q``),
            ``efficiency`` (Kish ESS / trials), ``trials``, ``log_integral``
            and ``log_stderr`` (the log of Z's standard error). Every trial
            counts in the average, the rejected ones as zero.

        Raises
        ------
        ValueError
            When no trial has ``log L ≥ logzero`` inside the prior.
        """
        batch_size = check_int("batch_size", batch_size)
        sample_size = check_int("sample_size", sample_size)
        logzero = float(logzero)

        def log_like(theta):
            value = float(loglikelihood(theta))
            return value if value >= logzero else -np.inf

        try:
            res = importance_evidence(
                log_like,
                self.estimator,
                prior=lambda x: as_numpy(prior_pdf(x)),
                n=sample_size,
                vectorized=False,
                batch_size=batch_size,
                seed=self.seed,
                progress=False,
            )
        except ValueError as err:
            if "zero weight" not in str(err):
                raise
            raise ValueError(
                f"no trial has log-likelihood >= logzero = {logzero:g} where the prior is positive: "
                "the estimator and the likelihood do not overlap, or logzero is above every log L"
            ) from None
        log_w = np.log(res.weights) + res.logZ + np.log(res.n)  # weights normalised to 1 back to L π / q
        return {
            "x": res.samples,
            "y": res.log_likelihood,
            "weights": np.exp(log_w),
            "efficiency": res.ess / res.n,
            "trials": res.n,
            "log_integral": res.logZ,
            "log_stderr": res.logZ + np.log(res.logZ_err) if res.logZ_err > 0 else -np.inf,
        }
