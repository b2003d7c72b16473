"""Sequential inference: the fitted posterior of analysis A as the prior of analysis B.

``P(θ | A, B) ∝ L_B(θ) P(θ | A)`` and ``Z_AB = Z_A Z_{B|A}`` with
``Z_{B|A} = ∫ L_B(θ) P(θ | A) dθ``. :func:`sequential` fits an estimator to
A's chain, runs pocoMC with it as the prior (:class:`~margflow.FlowPrior`) and
B's likelihood, and returns B's weighted posterior with ``log Z_{B|A}`` and
``log Z_AB``. The error of ``log Z_{B|A}`` has two parts: pocoMC's own, and the
estimator's, which pocoMC cannot see (it treats the fitted prior as exact).
The estimator's part comes from Bayesian-bootstrap refits ``q_b`` of the prior
(:meth:`~margflow.DensityEstimator.bootstrap`): each gives
``log Z_{B|A}^(b) = log Z_{B|A} + log E_post[q_b / q]`` by reweighting the same
posterior draws, so it costs no further likelihood calls; the spread over
``b`` is the error. Beside it stands the information limit
``√(1/ESS_B − 1/N)`` (``ESS_B`` the Kish size of ``L_B`` over A's chain), the
error of reweighting the chain itself; a smooth fit may beat it.
:func:`compare` sets the result beside a one-shot joint analysis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

from margflow import _torch
from margflow.data import kish_ess
from margflow.densities import evaluate_rows
from margflow.estimator import ensemble_members
from margflow.priors import FlowPrior

__all__ = ["sequential", "SequentialResult", "compare", "information_limit"]


def information_limit(log_likelihood_b, theta_a, weights_a=None, *, vectorized=True):
    """``σ_info = √(1/ESS_B − 1/N)``: the error of log Z_{B|A} from reweighting a finite chain A.

    ``ESS_B`` is the Kish effective sample size of ``w_A L_B`` over A's chain
    and ``N`` the Kish size of ``w_A``: what the chain knows about the region
    B selects. It is the error of reweighting the chain itself by ``L_B``. A
    smooth fit to the chain can do better where its form is right (on the
    linear-Gaussian benchmark the flow's bootstrap error was 0.006 against
    σ_info 0.077) and worse where it is not; the bootstrap error of
    :func:`sequential` measures the fit's own.

    Returns
    -------
    sigma, ess_b, n : float
    """
    x = np.asarray(theta_a, dtype=np.float64)
    w = np.ones(len(x)) if weights_a is None else np.asarray(weights_a, dtype=np.float64)
    logl = evaluate_rows(log_likelihood_b, x, vectorized)
    n = kish_ess(w)
    with np.errstate(divide="ignore"):
        logw = np.log(w) + logl
    if not np.isfinite(logw).any():
        return np.inf, 0.0, n
    ess_b = kish_ess(np.exp(logw - logw.max()))  # scaled: L_B may overflow
    return float(np.sqrt(max(1.0 / ess_b - 1.0 / n, 0.0))), ess_b, n


@dataclass
class SequentialResult:
    """What :func:`sequential` returns.

    Attributes
    ----------
    samples : ndarray (m, d)
        Posterior of A and B together, from pocoMC.
    weights : ndarray (m,)
        Their weights, normalised (pocoMC's samples are weighted: ignoring the
        weights inflates the variances).
    params : list of str
    logZ_B_given_A : float
        ``log Z_{B|A}``: B's evidence with A's fitted posterior as prior.
    logZ_B_given_A_err : float
        Its total error: pocoMC's and the estimator's in quadrature.
    sampler_err, estimator_err : float
        The two parts (``estimator_err`` is 0 without an ensemble).
    logZ_A, logZ_A_err : float or None
        A's evidence (given, or from anesthetic input) and its error.
    logZ_AB, logZ_AB_err : float or None
        ``log Z_A + log Z_{B|A}``, when ``logZ_A`` is known.
    sigma_info, ess_b : float or None
        The information limit (see :func:`information_limit`), when computed.
    estimator : DensityEstimator
        The fit to A.
    prior : FlowPrior
    ensemble_logZ : ndarray
        ``log Z_{B|A}`` under each bootstrap refit.
    log_likelihood : ndarray (m,)
        ``log L_B`` at the samples.
    joint, comparison : dict or None
        With ``joint=``: the one-shot joint run and its comparison (see
        :func:`sequential`).
    sampler : pocomc.Sampler
        For its diagnostics (not pickled).
    """

    samples: np.ndarray
    weights: np.ndarray
    params: list
    logZ_B_given_A: float
    logZ_B_given_A_err: float
    sampler_err: float
    estimator_err: float
    logZ_A: float | None
    logZ_A_err: float | None
    logZ_AB: float | None
    logZ_AB_err: float | None
    sigma_info: float | None
    ess_b: float | None
    estimator: object
    prior: FlowPrior
    ensemble_logZ: np.ndarray
    log_likelihood: np.ndarray
    joint: dict | None = None
    comparison: dict | None = None
    sampler: object = field(default=None, repr=False)

    @property
    def ess(self):
        """Kish effective sample size of the posterior weights."""
        return kish_ess(self.weights)

    def mean(self):
        return np.average(self.samples, weights=self.weights, axis=0)

    def std(self):
        m = self.mean()
        return np.sqrt(np.average((self.samples - m) ** 2, weights=self.weights, axis=0))

    def to_anesthetic(self):
        """The weighted posterior as ``anesthetic.samples.Samples`` (with ``logL``)."""
        from anesthetic.samples import Samples

        return Samples(self.samples, columns=self.params, weights=self.weights, logL=self.log_likelihood)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["sampler"] = None
        return state

    def __repr__(self):
        ab = "" if self.logZ_AB is None else f", logZ_AB={self.logZ_AB:.4f}±{self.logZ_AB_err:.4f}"
        return (
            f"SequentialResult(params={self.params}, logZ_B|A={self.logZ_B_given_A:.4f}"
            f"±{self.logZ_B_given_A_err:.4f} (sampler {self.sampler_err:.4f}, estimator {self.estimator_err:.4f})"
            f"{ab}, ESS={self.ess:.0f})"
        )


def sequential(
    posterior_a,
    log_likelihood_b,
    *,
    params=None,
    bounds=None,
    weights=None,
    logZ_a=None,
    logZ_a_err=None,
    estimator=None,
    fit_kwargs=None,
    prior_bounds=None,
    ensemble=8,
    information=True,
    vectorized=True,
    pool=None,
    n_effective=512,
    n_active=256,
    n_total=4096,
    n_evidence=4096,
    sampler_kwargs=None,
    joint=None,
    seed=0,
    progress=True,
):
    """Analysis B with the fitted posterior of analysis A as its prior, sampled by pocoMC.

    Parameters
    ----------
    posterior_a : ndarray, pandas.DataFrame, anesthetic samples or DensityEstimator
        A's posterior: a (weighted) chain, or an estimator already fitted to
        one.
    log_likelihood_b : callable
        ``log L_B(θ)`` over the same parameters; vectorised ``(n, d) → (n,)``
        unless ``vectorized=False`` (one (d,) point at a time). Picklable if
        ``pool`` is given.
    params, bounds, weights
        Of A's chain (see :func:`margflow.load_samples`); ``bounds`` is the
        prior box of A, which the estimator respects.
    logZ_a, logZ_a_err : float, optional
        A's evidence and error; default from anesthetic nested-sampling input
        (its error from anesthetic's draws of the weights).
    estimator : DensityEstimator class, optional
        Estimator to fit to A's chain (default :class:`~margflow.MAF`).
    fit_kwargs : dict, optional
        Passed to its ``fit``.
    prior_bounds : optional
        A box for B's prior narrower than A's bounds (the estimator is
        renormalised inside it, see :class:`~margflow.FlowPrior`).
    ensemble : int or sequence of DensityEstimator
        Bootstrap refits of the estimator for its share of the error of
        ``log Z_{B|A}`` (0: none; the reported error then leaves it out), or
        refits already made, ``posterior_a.bootstrap(n)``, to reuse them when
        one fit of A serves several analyses B.
    information : bool
        Also compute the information limit, which costs one evaluation of
        ``L_B`` per sample of A's chain.
    pool : int or object with ``map``, optional
        pocoMC's pool for the likelihood: a number of processes, a
        ``multiprocessing`` pool (use a ``spawn`` context with TensorFlow
        likelihoods) or an MPI pool (``mpi4py.futures.MPIPoolExecutor``). With a
        pool, pocoMC calls the likelihood one point at a time.
    n_effective, n_active, n_total, n_evidence
        pocoMC's settings (see ``pocomc.Sampler`` and ``Sampler.run``).
    sampler_kwargs : dict, optional
        Further keywords of ``pocomc.Sampler``.
    joint : (prior, log_likelihood), optional
        Also run the one-shot joint analysis with pocoMC (same settings):
        A's original prior (an object with ``logpdf``, ``rvs``, ``bounds``,
        such as ``pocomc.Prior``) and ``log L_A + log L_B`` over the same
        parameters. The result then carries ``joint`` (its samples, weights,
        log Z and error) and ``comparison`` (see :func:`compare`, plus
        ``kl``, the D_KL of the sequential posterior from the joint one
        estimated from the known densities, and ``logZ_z``, the difference of
        log Z_AB in units of the two errors).
    seed : int
        Seeds the fit, the refits and pocoMC.
    progress : bool

    Returns
    -------
    SequentialResult

    Raises
    ------
    RuntimeError
        Before anything runs, where TensorFlow was imported before margflow
        while triton (a CUDA torch build) is installed: pocoMC's flow
        training would abort the process (see :mod:`margflow._torch`).

    Notes
    -----
    When A's chain holds every parameter of A (no nuisance parameters), its
    log posterior values (``logL + log π`` up to a constant) are known at the
    samples; fitting with ``fit_kwargs={"loss": "kl_logvar", "log_density":
    values}`` then follows a thin curved posterior more closely than the
    default likelihood loss (benchmarks/RESULTS-sequential.md). With nuisance
    parameters those values are not the marginal's: keep the default.
    """
    _torch.check_for_pocomc()
    import pocomc

    from margflow.data import load_samples
    from margflow.estimator import DensityEstimator

    if isinstance(posterior_a, DensityEstimator):
        est = posterior_a
        data = est.data
    else:
        data = load_samples(posterior_a, params=params, weights=weights, bounds=bounds)
        if estimator is None:
            from margflow.flows import MAF

            estimator = MAF
        est = estimator(data.theta, params=data.params, bounds=data.bounds, weights=data.weights, seed=seed)
        if hasattr(est, "fit"):
            est.fit(**{"progress": progress, **(fit_kwargs or {})})
    if logZ_a is None and data.logZ is not None:
        logZ_a = data.logZ
        if logZ_a_err is None and data.source is not None and hasattr(data.source, "logZ"):
            logZ_a_err = float(np.std(data.source.logZ(200)))
    prior = FlowPrior(est, bounds=prior_bounds, seed=seed)
    members = ensemble_members(est, ensemble, seed=seed, progress=progress)  # before sampling: fail early

    sampler_args = dict(
        n_dim=prior.dim,
        n_effective=n_effective,
        n_active=n_active,
        vectorize=vectorized and pool is None,
        pool=pool,
        random_state=seed,
        **(sampler_kwargs or {}),
    )
    sampler = pocomc.Sampler(prior=prior, likelihood=log_likelihood_b, **sampler_args)
    sampler.run(n_total=n_total, n_evidence=n_evidence, progress=progress)
    x, w, logl, _ = sampler.posterior()
    w = np.asarray(w, np.float64) / np.sum(w)
    logz, logz_err = (float(v) for v in sampler.evidence())

    # the estimator's share: the same draws reweighted by each refit q_b / q
    lq = prior.logpdf(x)
    ens = []
    for m in members:
        lqb = FlowPrior(m, bounds=prior_bounds, seed=seed).logpdf(x)
        with np.errstate(divide="ignore"):
            ens.append(logz + float(logsumexp(lqb - lq, b=w)))
    ens = np.array(ens)
    est_err = float(np.std(ens, ddof=1)) if len(ens) > 1 else 0.0
    err = float(np.hypot(logz_err, est_err))

    sigma_info = ess_b = None
    if information:
        sigma_info, ess_b, _ = information_limit(log_likelihood_b, data.theta, data.weights, vectorized=vectorized)
    logZ_ab = logZ_ab_err = None
    if logZ_a is not None:
        logZ_ab = float(logZ_a) + logz
        logZ_ab_err = float(np.hypot(err, logZ_a_err or 0.0))
    joint_out = comparison = None
    if joint is not None:
        joint_out, comparison = _run_joint(
            joint,
            x,
            w,
            lq,
            np.asarray(logl, np.float64),
            logZ_ab,
            logZ_ab_err,
            sampler_args,
            n_total,
            n_evidence,
            progress,
        )
    return SequentialResult(
        samples=np.asarray(x, np.float64),
        weights=w,
        params=list(est.params),
        logZ_B_given_A=logz,
        logZ_B_given_A_err=err,
        sampler_err=logz_err,
        estimator_err=est_err,
        logZ_A=None if logZ_a is None else float(logZ_a),
        logZ_A_err=None if logZ_a_err is None else float(logZ_a_err),
        logZ_AB=logZ_ab,
        logZ_AB_err=logZ_ab_err,
        sigma_info=sigma_info,
        ess_b=ess_b,
        estimator=est,
        prior=prior,
        ensemble_logZ=ens,
        log_likelihood=np.asarray(logl, np.float64),
        joint=joint_out,
        comparison=comparison,
        sampler=sampler,
    )


def _run_joint(joint, x, w, log_q, log_lb, logZ_ab, logZ_ab_err, sampler_args, n_total, n_evidence, progress):
    """The one-shot joint run and its comparison with the sequential posterior ``(x, w)``."""
    import pocomc

    prior, log_like = joint
    s = pocomc.Sampler(prior=prior, likelihood=log_like, **sampler_args)
    s.run(n_total=n_total, n_evidence=n_evidence, progress=progress)
    xj, wj, _, _ = s.posterior()
    wj = np.asarray(wj, np.float64) / np.sum(wj)
    logz, logz_err = (float(v) for v in s.evidence())
    out = {"samples": np.asarray(xj, np.float64), "weights": wj, "logZ": logz, "logZ_err": logz_err}
    comparison = compare((x, w), xj, wj)
    # KL(seq ‖ joint) = E_seq[log r] + log E_seq[1/r], r = (L_B q_A) / (L_AB π) unnormalised: no evidences
    log_joint = evaluate_rows(log_like, x, sampler_args["vectorize"]) + np.asarray(prior.logpdf(x), np.float64)
    log_r = log_lb + log_q - log_joint
    ok = np.isfinite(log_r)
    comparison["kl"] = float(np.sum(w[ok] * log_r[ok]) / w[ok].sum() + logsumexp(-log_r[ok], b=w[ok] / w[ok].sum()))
    comparison["kl_outside"] = float(w[~ok].sum())  # sequential mass where the joint density is 0
    if logZ_ab is not None:
        comparison["logZ_z"] = float((logZ_ab - logz) / np.hypot(logZ_ab_err, logz_err))
    return out, comparison


def compare(result, joint_samples, joint_weights=None, *, bins=20):
    """How far a sequential posterior lies from a one-shot joint analysis of A and B.

    Parameters
    ----------
    result : SequentialResult, or (samples, weights)
    joint_samples : ndarray (n, d)
        The joint analysis' posterior over the same parameters, in the same
        column order.
    joint_weights : ndarray (n,), optional
    bins : int
        Bins per axis of the histogram KLs.

    Returns
    -------
    dict
        ``mean_shift`` and ``std_shift``: per parameter, (sequential − joint)
        in units of the joint standard deviation; ``std_ratio``;
        ``histogram_kl``: the mean KL over every 1-D and 2-D marginal
        histogram (Roch & Shen's metric), joint ‖ sequential; ``gaussian_kl``:
        KL(joint ‖ sequential) of the two Gaussian fits, in nats.
    """
    from margflow.selection import histogram_kl

    if isinstance(result, SequentialResult):
        xs, ws = result.samples, result.weights
    else:
        xs, ws = result
    xs = np.asarray(xs, np.float64)
    ws = np.ones(len(xs)) if ws is None else np.asarray(ws, np.float64)
    xj = np.asarray(joint_samples, np.float64)
    wj = np.ones(len(xj)) if joint_weights is None else np.asarray(joint_weights, np.float64)
    if xs.shape[1] != xj.shape[1]:
        raise ValueError(f"the sequential posterior has {xs.shape[1]} parameters, the joint one {xj.shape[1]}")

    def moments(x, w):
        m = np.average(x, weights=w, axis=0)
        c = np.atleast_2d(np.cov(x.T, aweights=w))
        return m, c

    ms, cs = moments(xs, ws)
    mj, cj = moments(xj, wj)
    sj = np.sqrt(np.diag(cj))
    d = len(ms)
    inv = np.linalg.inv(cs)
    gkl = 0.5 * (
        np.trace(inv @ cj) + (ms - mj) @ inv @ (ms - mj) - d + np.linalg.slogdet(cs)[1] - np.linalg.slogdet(cj)[1]
    )
    return {
        "mean_shift": (ms - mj) / sj,
        "std_shift": (np.sqrt(np.diag(cs)) - sj) / sj,
        "std_ratio": np.sqrt(np.diag(cs)) / sj,
        "histogram_kl": histogram_kl(xj, wj, xs, bins=bins, draw_weights=ws),
        "gaussian_kl": float(gkl),
    }
