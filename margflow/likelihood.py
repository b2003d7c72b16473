"""Nuisance-free likelihoods L(θ) = P(θ) Z / π(θ) and their joint combination by parameter name.

Marginalising a run's posterior over its nuisance parameters α leaves the
posterior P(θ) of the core parameters; with the run's evidence Z and the
marginal prior π(θ) of the core parameters, Bayes' theorem gives back the
likelihood with the nuisance parameters integrated out,
``L(θ) = ∫ L(θ, α) π(α | θ) dα = P(θ) Z / π(θ)``. Experiments that share θ
but have their own nuisance parameters (with independent priors) combine as
``log L_AB(θ) = log L_A(θ) + log L_B(θ)``.
"""

from __future__ import annotations

import numpy as np

from margflow.densities import log_density

__all__ = ["NuisanceFreeLikelihood", "JointLikelihood"]


def _as_rows(theta, dim, name):
    x = np.asarray(theta, dtype=np.float64)
    single = x.ndim == 1
    if single:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{name} takes points of {dim} parameters, as (n, {dim}) or ({dim},); got shape {x.shape}")
    return x, single


class NuisanceFreeLikelihood:
    """``log L(θ) = log P(θ) + log Z - log π(θ)`` from a fitted marginal posterior.

    Parameters
    ----------
    estimator : DensityEstimator
        The marginal posterior P(θ) of the core parameters.
    prior : None, bounds, DensityEstimator, scipy distribution(s) or callable
        The marginal prior π(θ) of the same parameters (see
        :func:`margflow.densities.log_density`); default uniform on the
        estimator's bounds.
    logZ : float, optional
        The run's evidence; default the one the estimator's nested-sampling
        input carried (``estimator.logZ``).

    Notes
    -----
    Calls are vectorised: ``(n, d)`` points give ``n`` float64 values, one
    point of shape ``(d,)`` gives a float. Points outside the estimator's
    bounds or the prior's support give ``-inf``. The object pickles (the
    estimator travels as its model file), so it can be handed to sampler
    process pools.

    Examples
    --------
    >>> import numpy as np, margflow as mf
    >>> x = np.random.default_rng(0).uniform(0.3, 0.7, size=(500, 2))
    >>> kde = mf.KDE(x, bounds=[[0, 1], [0, 1]])
    >>> like = mf.NuisanceFreeLikelihood(kde, logZ=-3.0)
    >>> like([[0.5, 0.5], [1.5, 0.5]]).round(2)
    array([-1.12,  -inf])
    """

    def __init__(self, estimator, prior=None, logZ=None):
        if logZ is None:
            logZ = estimator.logZ
        if logZ is None:
            raise ValueError(
                "the evidence is not known: the estimator's samples carried no logZ "
                "(only anesthetic nested-sampling input does); give logZ="
            )
        logZ = float(logZ)
        if not np.isfinite(logZ):
            raise ValueError(f"logZ must be finite, got {logZ}")
        self.estimator = estimator
        self.logZ = logZ
        self.prior = prior
        self._log_prior = log_density(prior, estimator)

    @property
    def params(self):
        """Parameter names, in column order."""
        return list(self.estimator.params)

    @property
    def dim(self):
        return self.estimator.dim

    @property
    def bounds(self):
        """(d, 2) bounds of the estimator (``±inf`` where open)."""
        return self.estimator.bounds

    def __call__(self, theta):
        x, single = _as_rows(theta, self.dim, "the likelihood")
        out = np.full(len(x), -np.inf)
        lp = self.estimator.log_prob(x)
        ok = np.isfinite(lp)
        if ok.any():
            lpi = self._log_prior(x[ok])
            good = np.isfinite(lpi)
            vals = np.full(len(lpi), -np.inf)
            vals[good] = lp[ok][good] + self.logZ - lpi[good]
            out[ok] = vals
        return float(out[0]) if single else out

    def __repr__(self):
        return f"NuisanceFreeLikelihood(params={self.params}, logZ={self.logZ:.4g})"


class JointLikelihood:
    """The sum of log-likelihoods of several experiments, matched by parameter name.

    Parameters
    ----------
    *likelihoods : objects with ``params`` and a vectorised ``__call__``
        For example :class:`NuisanceFreeLikelihood` of each experiment (or
        other JointLikelihoods). Shared parameters are matched by name; a
        parameter only one experiment has is passed to that one alone.

    Attributes
    ----------
    params : list of str
        Union of the experiments' parameters, in order of first appearance:
        the columns of the points the joint likelihood takes.
    bounds : ndarray (d, 2)
        Per parameter, the intersection of the experiments' bounds.

    Examples
    --------
    >>> import numpy as np, margflow as mf
    >>> rng = np.random.default_rng(1)
    >>> a = mf.KDE(rng.uniform(0.3, 0.7, (400, 2)), params=["h", "om"], bounds=[[0, 1], [0, 1]])
    >>> b = mf.KDE(rng.uniform(0.4, 0.8, (400, 2)), params=["h", "s8"], bounds=[[0, 1], [0, 1]])
    >>> joint = mf.JointLikelihood(mf.NuisanceFreeLikelihood(a, logZ=0.0), mf.NuisanceFreeLikelihood(b, logZ=0.0))
    >>> joint.params
    ['h', 'om', 's8']
    >>> joint([[0.5, 0.5, 0.6], [0.5, 0.5, 1.2]]).shape
    (2,)
    """

    def __init__(self, *likelihoods):
        if not likelihoods:
            raise ValueError("give at least one likelihood")
        params = []
        for like in likelihoods:
            if not hasattr(like, "params") or not callable(like):
                raise TypeError(f"{type(like).__name__} is not a likelihood with parameter names (`params`)")
            params += [p for p in like.params if p not in params]
        self.likelihoods = list(likelihoods)
        self.params = params
        self._columns = [np.array([params.index(p) for p in like.params]) for like in likelihoods]
        bounds = np.tile([-np.inf, np.inf], (len(params), 1))
        for like, cols in zip(likelihoods, self._columns):
            b = getattr(like, "bounds", None)
            if b is not None:
                b = np.asarray(b, dtype=np.float64)
                bounds[cols, 0] = np.maximum(bounds[cols, 0], b[:, 0])
                bounds[cols, 1] = np.minimum(bounds[cols, 1], b[:, 1])
        empty = [p for p, (lo, hi) in zip(params, bounds) if lo >= hi]
        if empty:
            raise ValueError(f"the experiments' bounds do not overlap on {empty}")
        self.bounds = bounds

    @property
    def dim(self):
        return len(self.params)

    def __call__(self, theta):
        x, single = _as_rows(theta, self.dim, "the joint likelihood")
        out = np.zeros(len(x))
        for like, cols in zip(self.likelihoods, self._columns):
            live = out > -np.inf
            if not live.any():
                break
            vals = np.asarray(like(x[live][:, cols]), dtype=np.float64)
            out[live] += vals
        out[np.isnan(out)] = -np.inf
        return float(out[0]) if single else out

    def tension(self, proposal=None, prior=None, n=20_000, *, nsamples=500, defensive=0.1, seed=None, progress=True):
        """Tension statistics between the experiments, in anesthetic's conventions.

        ``logR = log Z_AB - Σ log Z_i``, ``I = Σ D_i - D_AB``,
        ``logS = ⟨log L_AB⟩_AB - Σ ⟨log L_i⟩_i``, ``d_G = Σ d_i - d_AB``, and
        the p-value and its number of sigma (anesthetic's
        ``tension_stats``). Each experiment's statistics come from
        :func:`margflow.marginal_stats` of its estimator; the joint posterior
        and ``Z_AB`` from :func:`margflow.importance_evidence` of this joint
        likelihood.

        Parameters
        ----------
        proposal : DensityEstimator, optional
            Proposal for the joint posterior; default the estimator of the
            most informative experiment (largest D_KL). Under strong tension
            the joint posterior sits in its tail: the importance weights
            collapse and the reported errors grow with it.
        prior : optional
            The prior on the shared parameters; default the first
            experiment's.
        n, defensive, seed, progress
            Of the importance sampling.
        nsamples : int
            Draws of every statistic.

        Returns
        -------
        anesthetic.samples.Samples
            Columns ``logR, I, logS, d_G, p, sigma``. Every experiment's
            evidence enters ``L_AB`` and the separate statistics alike, so its
            nested-sampling error cancels in ``logR`` and ``logS`` (as it
            does exactly: ``logR = log ∫ P_A P_B / π``).
        """
        from anesthetic.tension import tension_stats

        from margflow.evidence import importance_evidence
        from margflow.stats import marginal_stats

        for like in self.likelihoods:
            if not isinstance(like, NuisanceFreeLikelihood) or like.params != self.params:
                raise ValueError(
                    "tension statistics need NuisanceFreeLikelihoods of the same parameters "
                    f"(joint parameters {self.params})"
                )
        rng = np.random.default_rng(seed)
        separate = [
            marginal_stats(
                like.estimator, prior=like.prior, logZ=like.logZ, nsamples=nsamples, seed=rng.integers(2**31)
            )
            for like in self.likelihoods
        ]
        if proposal is None:
            best = int(np.argmax([st["D_KL"].mean() for st in separate]))
            proposal = self.likelihoods[best].estimator
        if prior is None:
            prior = self.likelihoods[0].prior
        res = importance_evidence(
            self, proposal, prior, n, defensive=defensive, seed=int(rng.integers(2**31)), progress=progress
        )
        joint = res.stats(nsamples, seed=int(rng.integers(2**31)))
        # L_AB holds each experiment's logZ point value; let the joint draws carry the same
        # draws of it as the separate statistics, so that error cancels as it should
        shift = sum(st["logZ"].to_numpy() - like.logZ for st, like in zip(separate, self.likelihoods))
        joint["logZ"] = joint["logZ"].to_numpy() + shift
        joint["logL_P"] = joint["logL_P"].to_numpy() + shift
        return tension_stats(joint, *separate)

    def __repr__(self):
        return f"JointLikelihood(params={self.params}, experiments={len(self.likelihoods)})"
