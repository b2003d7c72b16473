"""Piecewise (k-means clustered) mixture of masked autoregressive flows."""

from __future__ import annotations

import warnings

import numpy as np

from margflow.data import SampleData, min_samples
from margflow.flows.maf import MAF
from margflow.mixture import _Mixture

__all__ = ["PiecewiseMAF"]


class PiecewiseMAF(_Mixture):
    """A mixture of MAFs, one per k-means cluster of the samples (Bevins & Handley, arXiv:2305.02930).

    A flow with a Gaussian base leaves bridges of mass between separated
    modes. Here the samples are clustered by k-means (scikit-learn, k-means++
    with several initialisations, sample weights honoured) in the whitened
    space of all samples, one :class:`~margflow.MAF` is fit to each cluster
    (with the same bounds and its own whitening) through the shared training
    loop, and the density is the mixture

    ``log p(θ) = logsumexp_k(log W_k + log p_k(θ))``,

    with ``W_k`` the cluster's share of the total sample weight. Each member is
    normalised over the box, so the mixture is too.

    Parameters
    ----------
    samples : ndarray (n, d), pandas.DataFrame or anesthetic samples
    params : list of str, optional
    bounds : None, "auto", (d, 2) array or dict
    weights : array_like, optional
    n_clusters : int, optional
        Number of clusters. Default: the k in ``2 … max_clusters`` with the
        best silhouette score on a weighted random subsample of
        ``cluster_rows`` samples.
    labels : array_like, optional
        Cluster label of every input row (any hashable values); used as given,
        never overwritten. Exclusive with ``n_clusters``.
    max_clusters : int
        Largest k tried when choosing k.
    cluster_rows : int
        Size of the subsample on which k is chosen.
    n_layers, hidden, activation, base
        Architecture of every member flow (see :class:`~margflow.MAF`).
    transform : {"probit", "logit"}
    seed : int
        Seeds the clustering, the subsample and the members.

    Notes
    -----
    ``transform(u)`` uses the first hypercube coordinate to pick the cluster
    (``u_0`` in ``[C_{k-1}, C_k)``, the cumulative mixture weights) and
    rescales it to ``[0, 1]`` for that member's transform: deterministic,
    order-preserving, and uniform ``u`` gives samples of the mixture, but the
    map is only piecewise bijective (it jumps between clusters at the edges
    ``C_k``). ``inverse_transform`` assigns each point to its most responsible
    cluster, so ``transform(inverse_transform(θ)) = θ`` always, while
    ``inverse_transform(transform(u)) = u`` only where the clusters do not
    overlap.

    Examples
    --------
    >>> import numpy as np, margflow as mf
    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.normal(-3, 0.5, (300, 2)), rng.normal(3, 0.5, (300, 2))])
    >>> pw = mf.PiecewiseMAF(x, n_clusters=2, n_layers=2, hidden=(8, 8))
    >>> hist = pw.fit(epochs=3, progress=False)
    >>> pw.n_clusters, pw.log_prob(x[:2]).shape
    (2, (2,))
    """

    def __init__(
        self,
        samples,
        *,
        params=None,
        bounds=None,
        weights=None,
        n_clusters=None,
        labels=None,
        max_clusters=10,
        cluster_rows=5000,
        n_layers=6,
        hidden=(32, 32),
        activation="tanh",
        base="normal",
        transform="probit",
        blend="auto",
        seed=0,
    ):
        super().__init__(
            samples, params=params, bounds=bounds, weights=weights, transform=transform, blend=blend, seed=seed
        )
        if labels is not None and n_clusters is not None:
            raise ValueError("give labels or n_clusters, not both")
        if labels is not None:
            index, values = self._user_labels(labels)
            source = "labels"
        else:
            index = self._kmeans(n_clusters, int(max_clusters), int(cluster_rows))
            values = list(range(int(index.max()) + 1))
            source = "kmeans"
        self.config = {
            "source": source,
            "label_values": [v.item() if hasattr(v, "item") else v for v in values],
            "maf": {
                "n_layers": int(n_layers),
                "hidden": [int(h) for h in np.atleast_1d(hidden)],
                "activation": str(activation),
                "base": base,
            },
        }
        self._labels = index
        self.members = [
            MAF(
                self.data.theta[index == k],
                params=self.params,
                bounds=self.bounds,
                weights=self.data.weights[index == k],
                transform=transform,
                blend=blend,
                seed=self.seed + k,
                **self.config["maf"],
            )
            for k in range(len(values))
        ]
        self._mixture()

    # -- clustering -------------------------------------------------------------
    def _user_labels(self, labels):
        labels = np.asarray(labels)
        kept = self.data.kept  # set by the intake (None only after loading a file)
        if labels.ndim != 1 or len(labels) != len(kept):
            raise ValueError(f"labels must hold one label per input sample ({len(kept)}), got shape {labels.shape}")
        labels = labels[kept]  # follow the rows kept (non-finite ones were dropped)
        values, index = np.unique(labels, return_inverse=True)
        positive = self.data.weights > 0
        need = min_samples(self.dim)
        for k, v in enumerate(values):
            v = v.item() if hasattr(v, "item") else v
            count = int(np.sum(positive & (index == k)))
            if count == 0:
                raise ValueError(f"cluster {v!r} has no sample with positive weight; drop or relabel it")
            if count < need:
                raise ValueError(
                    f"cluster {v!r} has {count} samples with positive weight; a member flow needs at least "
                    f"{need}: merge it into another cluster"
                )
        return index, list(values)

    def _kmeans(self, n_clusters, max_clusters, cluster_rows):
        from sklearn.cluster import KMeans
        from sklearn.metrics import silhouette_score

        positive = self.data.weights > 0
        z = self._pre.forward(self.data.theta)[0].numpy()
        zp, wp = z[positive], self.data.weights[positive]
        need = min_samples(self.dim)
        most = len(zp) // need
        rng = np.random.default_rng(self.seed)
        if n_clusters is not None:
            if int(n_clusters) != n_clusters or n_clusters < 1:
                raise ValueError(f"n_clusters must be a positive integer, got {n_clusters!r}")
            k = int(n_clusters)
            if k > most:
                raise ValueError(
                    f"n_clusters={k} needs at least {k * need} samples with positive weight ({need} per cluster); "
                    f"there are {len(zp)}: lower n_clusters"
                )
        elif most < 2:
            warnings.warn(
                f"{len(zp)} samples with positive weight allow one cluster only ({need} per cluster); "
                "fitting a single flow",
                stacklevel=3,
            )
            k = 1
        else:
            # choose k on a subsample drawn by weight
            m = min(cluster_rows, len(zp), int(np.sum(wp > 0)))
            sub = zp[rng.choice(len(zp), size=m, replace=False, p=wp / wp.sum())]
            scores = {}
            for k in range(2, min(max_clusters, most, m - 1) + 1):
                km = KMeans(k, init="k-means++", n_init=3, random_state=self.seed).fit(sub)
                if len(np.unique(km.labels_)) < 2:
                    continue
                scores[k] = silhouette_score(sub, km.labels_)
            k = max(scores, key=scores.get) if scores else 1
            self._silhouette = scores
        while True:
            km = KMeans(k, init="k-means++", n_init=10, random_state=self.seed).fit(zp, sample_weight=wp)
            index = km.predict(z)
            counts = np.bincount(index[positive], minlength=k)
            if k == 1 or counts.min() >= need:
                return index
            warnings.warn(
                f"k-means gave a cluster of {int(counts.min())} samples with positive weight (a flow needs {need}); "
                f"lowering the number of clusters from {k} to {k - 1}",
                stacklevel=3,
            )
            k -= 1

    def _mixture(self):
        w = self.data.weights
        self._set_mixture_weights([w[self._labels == k].sum() for k in range(len(self.members))])

    @property
    def n_clusters(self):
        return len(self.members)

    @property
    def labels(self):
        """Cluster label of every kept sample (the user's values when labels were given)."""
        values = np.asarray(self.config["label_values"])
        return values[self._labels]

    # -- training ---------------------------------------------------------------
    def fit(
        self,
        epochs=1000,
        batch_size=256,
        learning_rate=3e-3,
        patience=50,
        validation_fraction=0.2,
        *,
        clip_norm=10.0,
        ema_decay=0.99,
        seed=None,
        progress=True,
    ):
        """Train every member flow through the shared loop, with one progress bar over the clusters.

        Arguments as :meth:`margflow.flows.base.FlowEstimator.fit`; member ``k``
        is seeded with ``seed + k``. Returns the list of the members' histories.
        """
        return self._fit_members(
            "fit clusters",
            seed,
            progress,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            patience=patience,
            validation_fraction=validation_fraction,
            clip_norm=clip_norm,
            ema_decay=ema_decay,
        )

    def _settings(self):
        return {**super()._settings(), "labels": self._labels, **self.config["maf"]}

    def _fit_kwargs(self):
        return {k: v for k, v in self.members[0]._fit_kwargs().items() if k != "loss"}  # members train on NLL

    def __repr__(self):
        state = "untrained" if self.history is None else "trained"
        return f"PiecewiseMAF(params={self.params}, dim={self.dim}, n_clusters={self.n_clusters}, {state})"

    # -- state for io -----------------------------------------------------------
    def _member_data(self, k):
        rows = self._labels == k
        return SampleData(self.data.theta[rows], self.data.weights[rows], self.params, self.bounds)

    def _get_state(self):
        configs, arrays = self._members_state()
        return {**self.config, "members": configs}, {"labels": self._labels, **arrays}

    def _set_state(self, config, arrays):
        self.config = {key: v for key, v in config.items() if key != "members"}
        self._labels = np.asarray(arrays["labels"], dtype=np.int64)
        self._restore_members(config["members"], arrays)
        self._mixture()
