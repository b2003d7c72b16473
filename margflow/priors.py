"""Estimators as priors of samplers: pocoMC, emcee and nested samplers.

The posterior of one analysis, fitted, becomes the prior of the next.

- :class:`FlowPrior` is pocoMC's prior interface (``logpdf``, ``rvs``,
  ``bounds``, ``dim``) over any margflow estimator, renormalised to a prior box
  narrower than the estimator's support.
- :class:`LogPosterior` is ``log π(θ) + log L(θ)`` for a vectorised emcee
  ensemble; :func:`emcee_sampler` builds the sampler, starts the walkers from
  the prior and warns when the prior has separated modes, which emcee cannot
  reweight.
- For nested samplers, an estimator's own ``transform(u)`` is the prior
  transform (:meth:`FlowPrior.transform` too, when the prior is not
  truncated).

Everything here pickles (estimators travel as their model files), so it can
go to a sampler's process or MPI pool.
"""

from __future__ import annotations

import warnings

import numpy as np

from margflow.bounds import parse_bounds
from margflow.densities import evaluate_rows

__all__ = ["FlowPrior", "LogPosterior", "emcee_sampler", "separated_modes"]


def _seed(random_state):
    """An integer seed from None (numpy's global generator, which samplers seed), an int or a Generator."""
    if random_state is None:
        return int(np.random.randint(2**31))  # noqa: NPY002 (deliberate: pocoMC seeds this generator)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**31))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31))
    return int(random_state)


class FlowPrior:
    """A margflow estimator as the prior of a sampler (pocoMC's prior interface).

    Parameters
    ----------
    estimator : DensityEstimator
        Any margflow estimator (MAF, RealNVP, SplineFlow, KDE, PiecewiseMAF),
        typically the fitted posterior of a previous analysis.
    bounds : None, (d, 2) array_like or dict, optional
        The prior box. Default: the estimator's bounds. Where the box is
        narrower than the estimator's support, the density is renormalised by
        the estimator's mass inside it (estimated from ``n_mass`` draws, with
        its error in ``log_mass_err``); otherwise the next analysis' evidence
        would be off by the log of that mass. Where it is wider, the support
        is the estimator's.
    n_mass : int
        Draws that estimate the mass inside a narrower box.
    seed : int
        Seeds those draws.

    Attributes
    ----------
    bounds : ndarray (d, 2), float64
        The support: the box intersected with the estimator's bounds
        (``±inf`` where open).
    dim : int
    params : list of str
    log_mass, log_mass_err : float
        Log of the estimator's mass inside the box and its Monte Carlo error
        (both 0 when the box does not cut the support).

    Notes
    -----
    ``logpdf`` and ``rvs`` run the estimator's compiled TensorFlow programs
    (one call of a few hundred points takes about a millisecond), take and
    return float64, and ``logpdf`` of an empty (0, d) batch is an empty array.
    With ``random_state=None``, ``rvs`` seeds itself from numpy's global
    generator, so a sampler's ``random_state`` makes the run reproducible.

    Examples
    --------
    >>> import numpy as np, margflow as mf
    >>> x = np.random.default_rng(0).normal(0.5, 0.1, size=(2000, 2))
    >>> prior = mf.FlowPrior(mf.KDE(x, bounds=[[0, 1], [0, 1]]))
    >>> prior.dim, prior.bounds.tolist()
    (2, [[0.0, 1.0], [0.0, 1.0]])
    >>> prior.logpdf(np.zeros((0, 2))).shape, prior.rvs(5, random_state=1).shape
    ((0,), (5, 2))
    >>> prior.logpdf([[0.5, 0.5], [2.0, 0.5]]).round(2)
    array([2.63, -inf])
    """

    def __init__(self, estimator, bounds=None, *, n_mass=200_000, seed=0):
        from margflow.estimator import DensityEstimator

        if not isinstance(estimator, DensityEstimator):
            raise TypeError(f"FlowPrior takes a margflow estimator, got {type(estimator).__name__}")
        self.estimator = estimator
        own = estimator.bounds
        box = own if bounds is None else parse_bounds(bounds, estimator.params)
        support = np.column_stack([np.maximum(own[:, 0], box[:, 0]), np.minimum(own[:, 1], box[:, 1])])
        empty = [p for p, (lo, hi) in zip(estimator.params, support) if not lo < hi]
        if empty:
            raise ValueError(f"the prior box does not overlap the estimator's bounds on {empty}")
        self._bounds = support
        self.log_mass, self.log_mass_err, self.n_mass = 0.0, 0.0, 0
        self._cut = bool(np.any(support != own))
        if self._cut:
            n_mass = int(n_mass)
            inside = self._inside(estimator.sample(n_mass, seed=seed)).sum()
            if inside < 100:
                raise ValueError(
                    f"the estimator puts only {inside} of {n_mass} draws inside the prior box {support.tolist()}: "
                    "its mass there is too small to renormalise or to sample; widen the box or refit the estimator"
                )
            mass = inside / n_mass
            self.n_mass = n_mass
            self.log_mass = float(np.log(mass))
            self.log_mass_err = float(np.sqrt((1.0 - mass) / inside))

    # -- pocoMC's interface -------------------------------------------------------
    @property
    def bounds(self):
        """(d, 2) float64 array: the prior's support (``±inf`` where open)."""
        return self._bounds.copy()

    @property
    def dim(self):
        return self.estimator.dim

    @property
    def params(self):
        return list(self.estimator.params)

    @property
    def mass(self):
        """The estimator's mass inside the prior box (1 when the box does not cut it)."""
        return float(np.exp(self.log_mass))

    def _inside(self, x):
        return np.all((x >= self._bounds[:, 0]) & (x <= self._bounds[:, 1]), axis=1)

    def logpdf(self, x):
        """Log prior density of (n, d) points → (n,) float64 (one (d,) point → a float); ``-inf`` outside."""
        single = np.ndim(x) == 1
        x = self.estimator._rows(x, "x")
        out = self.estimator.log_prob(x)
        if self._cut:
            out = np.where(self._inside(x), out - self.log_mass, -np.inf)
        return float(out[0]) if single else out

    def rvs(self, size=1, random_state=None):
        """``size`` draws (size, d) float64 strictly inside the bounds.

        Parameters
        ----------
        size : int
        random_state : None, int or numpy Generator
            None draws the seed from numpy's global generator (which pocoMC's
            ``random_state`` seeds).
        """
        size = int(size)
        rng = np.random.default_rng(_seed(random_state))
        if not self._cut:
            return self._interior(self.estimator.sample(size, seed=int(rng.integers(2**31))))
        parts, have = [], 0
        while have < size:
            want = int(np.ceil((size - have) / self.mass * 1.1)) + 16
            x = self.estimator.sample(want, seed=int(rng.integers(2**31)))
            x = x[self._inside(x)]
            parts.append(x)
            have += len(x)
        return self._interior(np.concatenate(parts)[:size])

    def _interior(self, x):
        """Draws that rounded onto a finite bound, moved one float inward.

        Where the density piles against a bound, a few draws in 10^4 round to
        the bound itself; pocoMC's probit/logit map sends them to infinity and
        its sampler fails (a NaN in its Student-t fit). The move is far below
        any resolution of the density."""
        lo, hi = self._bounds[:, 0], self._bounds[:, 1]
        x = np.where(x <= lo, np.nextafter(lo, hi), x)
        return np.where(x >= hi, np.nextafter(hi, lo), x)

    # -- nested samplers ----------------------------------------------------------
    def transform(self, u):
        """Unit hypercube → θ, the prior transform of a nested sampler (see the estimator's ``transform``).

        Only for a prior the box does not cut: a truncated estimator has no
        exact transform; fit the estimator with the prior box as its bounds
        instead.
        """
        if self._cut:
            raise ValueError(
                "this prior is the estimator truncated to a narrower box, which has no exact unit-hypercube "
                "transform; fit the estimator with bounds= the prior box and use FlowPrior(estimator)"
            )
        return self.estimator.transform(u)

    def __repr__(self):
        cut = f", log_mass={self.log_mass:.4f}±{self.log_mass_err:.4f}" if self._cut else ""
        return f"FlowPrior({type(self.estimator).__name__}, params={self.params}{cut})"


class LogPosterior:
    """``log π(θ) + log L(θ)``, vectorised, for emcee (``vectorize=True``) and other MCMC samplers.

    Parameters
    ----------
    prior : FlowPrior or object with ``logpdf``
    likelihood : callable
        ``log L``; vectorised (``(n, d) → (n,)``, as margflow's likelihoods)
        unless ``vectorized=False``, when it takes one (d,) point at a time.
    vectorized : bool

    Notes
    -----
    The likelihood is called only where the prior is finite. A NaN from the
    likelihood is an error that names the point, not a silently rejected step.
    Picklable when the likelihood is.
    """

    def __init__(self, prior, likelihood, *, vectorized=True):
        if not hasattr(prior, "logpdf"):
            raise TypeError(f"the prior must have logpdf (for example mf.FlowPrior), got {type(prior).__name__}")
        if not callable(likelihood):
            raise TypeError(f"the likelihood must be callable, got {type(likelihood).__name__}")
        self.prior, self.likelihood, self.vectorized = prior, likelihood, bool(vectorized)

    def __call__(self, theta):
        single = np.ndim(theta) == 1
        x = np.atleast_2d(np.asarray(theta, dtype=np.float64))
        out = np.asarray(self.prior.logpdf(x), dtype=np.float64).copy()
        ok = np.isfinite(out)
        if ok.any():
            logl = evaluate_rows(self.likelihood, x[ok], self.vectorized, what="the likelihood")
            if np.isnan(logl).any():
                bad = x[ok][np.isnan(logl)][0]
                raise FloatingPointError(
                    f"the likelihood is NaN at {int(np.isnan(logl).sum())} points, for example {bad.tolist()}; "
                    "return -inf where the likelihood vanishes"
                )
            out[ok] += logl
        out[~ok] = -np.inf
        return float(out[0]) if single else out


def separated_modes(prior, n=3000, *, level=0.95, neighbours=10, min_weight=0.02, seed=0):
    """The separated modes of a prior: the disconnected pieces of its highest-density region.

    Draws ``n`` points and keeps those inside the ``level`` highest-density
    region (log-density above the ``1 - level`` quantile of the draws). Each
    kept point is linked to its ``neighbours`` nearest kept points (in the
    draws' whitened coordinates) unless the density at the midpoint of the
    link falls below the region's level; the connected groups are the modes.
    Every draw then joins the group of its nearest kept point, and the groups
    holding at least ``min_weight`` of the draws are returned. A curved
    (banana) mode stays one group; two modes joined only by a bridge of low
    density (a KDE's, or a flow's) are two.

    Parameters
    ----------
    prior : FlowPrior or DensityEstimator
    n : int
        Draws.
    level : float
        Probability content of the highest-density region.
    neighbours, min_weight, seed

    Returns
    -------
    list of dict
        One per mode, heaviest first: ``weight`` (share of the draws) and
        ``mean``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    if hasattr(prior, "rvs"):
        x, logpdf = prior.rvs(n, random_state=seed), prior.logpdf
    else:
        x, logpdf = prior.sample(n, seed=seed), prior.log_prob
    chol = np.linalg.cholesky(np.atleast_2d(np.cov(x.T)) + 1e-12 * np.eye(x.shape[1]))
    w = np.linalg.solve(chol, (x - x.mean(0)).T).T
    lp = logpdf(x)
    cut = np.quantile(lp, 1.0 - level)
    kept = np.flatnonzero(lp >= cut)
    k = min(int(neighbours) + 1, len(kept))
    tree = cKDTree(w[kept])
    _, idx = tree.query(w[kept], k=k)
    i = np.repeat(np.arange(len(kept)), k - 1)
    j = idx[:, 1:].ravel()
    link = logpdf(0.5 * (x[kept[i]] + x[kept[j]])) >= cut
    graph = coo_matrix((np.ones(link.sum()), (i[link], j[link])), shape=(len(kept), len(kept)))
    _, labels = connected_components(graph, directed=False)
    labels = labels[tree.query(w, k=1)[1]]  # every draw joins its nearest kept point's group
    modes = []
    for lab in np.unique(labels):
        rows = labels == lab
        if rows.mean() >= min_weight:
            modes.append({"weight": float(rows.mean()), "mean": x[rows].mean(0)})
    return sorted(modes, key=lambda m: -m["weight"])


def emcee_sampler(prior, likelihood, nwalkers=None, *, vectorized=True, check_modes=True, seed=None, **kwargs):
    """An ``emcee.EnsembleSampler`` of ``prior × likelihood`` and its walkers' start, drawn from the prior.

    Parameters
    ----------
    prior : FlowPrior
    likelihood : callable
        ``log L``, vectorised unless ``vectorized=False``.
    nwalkers : int, optional
        Default ``max(32, 4 d)``.
    check_modes : bool
        Look for separated modes of the prior (:func:`separated_modes`) and
        warn if there are several: emcee's stretch moves never carry walkers
        between separated modes, so its mode weights stay the starting split
        (the prior's), whatever the likelihood says. Use pocoMC
        (:func:`margflow.sequential`) or a nested sampler there.
    seed : int, optional
        Seeds the walkers' start.
    **kwargs
        Passed to ``emcee.EnsembleSampler`` (``moves``, ``pool``, ``backend``).

    Returns
    -------
    sampler : emcee.EnsembleSampler
        With ``vectorize=True``; its log-probability is a :class:`LogPosterior`.
    p0 : ndarray (nwalkers, d)
        Start with ``sampler.run_mcmc(p0, nsteps)``.
    """
    import emcee

    d = prior.dim
    nwalkers = max(32, 4 * d) if nwalkers is None else int(nwalkers)
    if nwalkers < 2 * d:
        raise ValueError(f"emcee needs at least 2 d = {2 * d} walkers, got {nwalkers}")
    if check_modes:
        modes = separated_modes(prior, seed=0 if seed is None else seed)
        if len(modes) > 1:
            split = ", ".join(f"{m['weight']:.2f} near {np.round(m['mean'], 3).tolist()}" for m in modes)
            warnings.warn(
                f"the prior has {len(modes)} separated modes ({split}). emcee never moves walkers between "
                "separated modes, so the posterior's mode weights will be the walkers' starting split, not "
                "what the likelihood implies; use pocoMC (mf.sequential) or a nested sampler",
                stacklevel=2,
            )
    sampler = emcee.EnsembleSampler(
        nwalkers, d, LogPosterior(prior, likelihood, vectorized=vectorized), vectorize=True, **kwargs
    )
    return sampler, prior.rvs(nwalkers, random_state=seed)
