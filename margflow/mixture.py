"""Mixtures of flows: the shared machinery, and the equal-weight ensemble of refits.

:class:`~margflow.PiecewiseMAF` (one flow per k-means cluster) and
:class:`Ensemble` (several fits of one flow to all the samples) are both
``log p(θ) = logsumexp_k(log W_k + log p_k(θ))`` over member estimators; the
density, sampling, hypercube transform, training loop over the members and the
model file live here once.
"""

from __future__ import annotations

import numpy as np

from margflow.bounds import Preprocessor
from margflow.estimator import DensityEstimator

__all__ = ["Ensemble"]


class _Mixture(DensityEstimator):
    """A weighted mixture of member estimators over the same parameters and bounds.

    Subclasses set ``self.members`` and call :meth:`_set_mixture_weights`, and
    say which samples member ``k`` holds (:meth:`_member_data`, for loading).
    """

    #: member class of files written before members recorded theirs
    _default_member = "MAF"

    def _set_mixture_weights(self, weights):
        weights = np.asarray(weights, dtype=np.float64)
        self.mixture_weights = weights / weights.sum()
        self._edges = np.concatenate([[0.0], np.cumsum(self.mixture_weights)])
        self._edges[-1] = 1.0

    @property
    def history(self):
        """The members' training histories (None before ``fit``)."""
        hist = [m.history for m in getattr(self, "members", [])]
        return None if not hist or any(h is None for h in hist) else hist

    @history.setter
    def history(self, value):  # the base class sets None before members exist
        pass

    def _fit_members(self, desc, seed, progress, **fit_kwargs):
        """Fit member ``k`` with ``seed + k`` under one progress bar; the members' histories."""
        from tqdm.auto import tqdm

        seed = self.seed if seed is None else int(seed)
        bar = tqdm(total=len(self.members), disable=not progress, desc=desc, unit="flow")
        try:
            for k, member in enumerate(self.members):
                hist = member.fit(**fit_kwargs, seed=seed + k, progress=False)
                bar.set_postfix(member=k, epochs=hist.epochs, val_loss=f"{hist.best_val_loss:.4f}", refresh=False)
                bar.update()
        finally:
            bar.close()
        return self.history

    # -- the mixture ------------------------------------------------------------
    def _member_log_probs(self, x):
        return np.stack([m.log_prob(x) for m in self.members]) + np.log(self.mixture_weights)[:, None]

    def log_prob(self, theta):
        """``logsumexp_k(log W_k + log p_k(θ))``: ``-inf`` outside the bounds, finite inside."""
        x = self._rows(theta, "theta")
        lp = self._member_log_probs(x)
        top = lp.max(axis=0)
        finite = np.isfinite(top)
        out = np.full(len(x), -np.inf)
        out[finite] = top[finite] + np.log(np.sum(np.exp(lp[:, finite] - top[finite]), axis=0))
        return out

    def sample(self, n, seed=None):
        """``n`` samples: member counts drawn by the mixture weights, rows in random order."""
        rng = np.random.default_rng(seed)
        n = int(n)
        counts = rng.multinomial(n, self.mixture_weights)
        seeds = rng.integers(0, 2**31, size=len(self.members))
        parts = [m.sample(c, seed=int(s)) for m, c, s in zip(self.members, counts, seeds) if c > 0]
        x = np.concatenate(parts) if parts else np.zeros((0, self.dim))
        return x[rng.permutation(n)]

    def _transform(self, u):
        """Unit hypercube → θ: ``u_0`` picks the member and is rescaled to [0, 1] for it."""
        k = np.clip(np.searchsorted(self._edges, u[:, 0], side="right") - 1, 0, len(self.members) - 1)
        v = u.copy()
        v[:, 0] = np.clip((u[:, 0] - self._edges[k]) / self.mixture_weights[k], 0.0, 1.0)
        out = np.empty_like(u)
        for j, member in enumerate(self.members):
            rows = k == j
            if rows.any():
                out[rows] = member.transform(v[rows])
        return out

    def inverse_transform(self, theta):
        """θ → unit hypercube through each point's most responsible member."""
        x = self._inside_rows(theta)
        k = np.argmax(self._member_log_probs(x), axis=0)
        out = np.empty_like(x)
        for j, member in enumerate(self.members):
            rows = k == j
            if rows.any():
                v = member.inverse_transform(x[rows])
                v[:, 0] = self._edges[j] + self.mixture_weights[j] * v[:, 0]
                out[rows] = v
        return out

    # -- state for io -----------------------------------------------------------
    def _member_data(self, k):
        """The :class:`~margflow.SampleData` member ``k`` was fit to (after loading)."""
        raise NotImplementedError

    def _members_state(self):
        """``(configs, arrays)`` of the members, arrays prefixed ``m{k}.``."""
        configs, arrays = [], {}
        for k, member in enumerate(self.members):
            mconf, marrays = member._get_state()
            pre = member._pre.state()
            configs.append({"class": type(member).__name__, "config": mconf, "pre": pre["config"], "seed": member.seed})
            arrays.update({f"m{k}.{name}": a for name, a in marrays.items()})
            arrays.update({f"m{k}.pre.{name}": a for name, a in pre["arrays"].items()})
        return configs, arrays

    def _restore_members(self, configs, arrays):
        self.members = []
        for k, mstate in enumerate(configs):
            cls = DensityEstimator.registry[mstate.get("class", self._default_member)]
            prefix, pre_prefix = f"m{k}.", f"m{k}.pre."
            pre = Preprocessor.from_state(
                {n[len(pre_prefix) :]: a for n, a in arrays.items() if n.startswith(pre_prefix)}, mstate["pre"]
            )
            marrays = {
                n[len(prefix) :]: a for n, a in arrays.items() if n.startswith(prefix) and not n.startswith(pre_prefix)
            }
            self.members.append(cls._restore(self._member_data(k), pre, mstate["seed"], mstate["config"], marrays))


def _flow_class(estimator):
    from margflow.flows.base import FlowEstimator

    cls = DensityEstimator.registry.get(estimator) if isinstance(estimator, str) else estimator
    if not (isinstance(cls, type) and issubclass(cls, FlowEstimator)):
        flows = sorted(n for n, c in DensityEstimator.registry.items() if issubclass(c, FlowEstimator))
        raise ValueError(
            f"estimator must be a flow class or its name ({', '.join(flows)}), got {estimator!r}; "
            "refits of the other estimators on the same samples do not differ"
        )
    return cls


class Ensemble(_Mixture):
    """The equal-weight mixture of ``n_members`` fits of one flow to the same samples.

    Member ``k`` is the flow ``estimator`` built with ``seed + k`` (its initial
    weights, validation split and shuffling) and trained by :meth:`fit` with
    the same settings. The density is the average of the members' densities,
    ``log p(θ) = logsumexp_k log p_k(θ) - log K``: normalised because each
    member is, and by the convexity of the KL divergence
    ``KL(p‖mixture) ≤ mean_k KL(p‖p_k)``, so the ensemble is never further
    from the target than its members are on average. What differs between
    fits (training noise, wiggles where the samples are thin) averages out;
    what they share (the finite sample, the architecture's limits) does not.
    Measured (benchmarks/RESULTS-table1.md): Jeffreys divergence of RealNVP
    (silu, ``loss="kl_logvar"``, ``stop_on="loss"``) on 10^5 banana samples,
    one fit 1.7e-5, four 8.6e-6, eight no lower; the small spline on 10,000
    banana samples (KL, mean of four datasets), one fit 0.0028, four 0.0024.

    Parameters
    ----------
    samples : ndarray (n, d), pandas.DataFrame or anesthetic samples
    estimator : class or str
        A flow class (:class:`~margflow.MAF`, :class:`~margflow.RealNVP`,
        :class:`~margflow.SplineFlow`) or its name.
    n_members : int
        Number of fits, at least 2.
    params, bounds, weights, transform, blend, seed
        As for every estimator; the members share them.
    **settings
        The flow's own constructor keywords (``n_layers``, ``hidden``,
        ``activation``, ``base``, ...), the same for every member.

    Notes
    -----
    ``transform(u)`` uses ``u_0`` to pick the member (in ``K`` equal slices)
    and rescales it for that member's transform, as
    :class:`~margflow.PiecewiseMAF` does: uniform ``u`` gives samples of the
    mixture, row order is kept, but the map jumps between members at the
    slice edges. ``inverse_transform`` goes through each point's most
    responsible member, so ``transform(inverse_transform(θ)) = θ``, while
    ``inverse_transform(transform(u))`` returns ``u`` only for the rows whose
    member is also the most responsible one: members that fit the same
    samples overlap, so the hypercube point of a θ is not unique.

    Examples
    --------
    >>> import numpy as np, margflow as mf
    >>> x = np.random.default_rng(0).normal(size=(500, 2))
    >>> ens = mf.Ensemble(x, estimator="MAF", n_members=2, n_layers=2, hidden=(8, 8))
    >>> hist = ens.fit(epochs=3, progress=False)
    >>> len(ens.members), ens.log_prob(x[:2]).shape
    (2, (2,))
    """

    def __init__(
        self,
        samples,
        *,
        estimator="MAF",
        n_members=4,
        params=None,
        bounds=None,
        weights=None,
        transform="probit",
        blend="auto",
        seed=0,
        **settings,
    ):
        cls = _flow_class(estimator)
        if int(n_members) != n_members or n_members < 2:
            raise ValueError(f"n_members must be an integer >= 2, got {n_members!r}")
        super().__init__(
            samples, params=params, bounds=bounds, weights=weights, transform=transform, blend=blend, seed=seed
        )
        self.members = []
        for k in range(int(n_members)):
            member = cls(
                self.data.theta,
                params=self.params,
                bounds=self.bounds,
                weights=self.data.weights,
                transform=transform,
                blend=blend,
                seed=self.seed + k,
                **settings,
            )
            member.data = self.data  # the same rows; and it maps per-input-row log_density through data.kept
            self.members.append(member)
        self.config = {"estimator": cls.__name__, "n_members": int(n_members)}
        self._set_mixture_weights(np.ones(len(self.members)))

    @property
    def estimator(self):
        """The members' flow class."""
        return type(self.members[0])

    @property
    def n_members(self):
        return len(self.members)

    def fit(self, *, seed=None, progress=True, **kwargs):
        """Train every member through the shared loop, member ``k`` with ``seed + k``.

        Keyword arguments as the member flow's ``fit`` (``epochs``, ``loss``,
        ``log_density``, ``stop_on``, ...), the same for every member; one
        progress bar over the members. Returns the list of the members' histories.
        """
        return self._fit_members("fit ensemble", seed, progress, **kwargs)

    def __repr__(self):
        state = "untrained" if self.history is None else "trained"
        return (
            f"Ensemble(params={self.params}, dim={self.dim}, estimator={self.estimator.__name__}, "
            f"n_members={self.n_members}, {state})"
        )

    # -- rebuilding (bootstrap) and io ------------------------------------------
    def _settings(self):
        member = self.members[0]._settings()
        return {**member, "estimator": self.estimator.__name__, "n_members": self.n_members}

    def _fit_kwargs(self):
        return self.members[0]._fit_kwargs()

    def _member_data(self, k):
        return self.data

    def _get_state(self):
        configs, arrays = self._members_state()
        return {**self.config, "members": configs}, arrays

    def _set_state(self, config, arrays):
        self.config = {key: v for key, v in config.items() if key != "members"}
        self._restore_members(config["members"], arrays)
        self._set_mixture_weights(np.ones(len(self.members)))
