"""margarine 1.x's ``clusterMAF`` on margflow's :class:`~margflow.PiecewiseMAF`."""

from __future__ import annotations

import numbers

import numpy as np

import margflow
from margflow.compat.margarine._common import as_numpy
from margflow.compat.margarine.maf import OPTIONS, _Flow

__all__ = ["clusterMAF"]


class clusterMAF(_Flow):  # noqa: N801 -- margarine's name
    """margarine 1.x's ``clusterMAF(theta, **kwargs)``: a k-means piecewise mixture of MAFs.

    Parameters
    ----------
    theta : ndarray (n, d), tf.Tensor, or anesthetic samples
    **kwargs
        As :class:`~margflow.compat.margarine.MAF`, plus ``cluster_number``
        and ``cluster_labels`` (give both or neither; without them the number
        of clusters is chosen by silhouette score).

    Notes
    -----
    The mixture is normalised over the box (each member is, weighted by its
    cluster's share of the weight). ``__call__`` picks the cluster from the
    first hypercube coordinate, so it is deterministic and keeps row order;
    its ``seed`` argument is accepted for margarine's signature and has
    nothing to seed. ``log_prob`` returns numpy, ``__call__`` and ``sample``
    tensors, as margarine did.
    """

    _margflow_class = margflow.PiecewiseMAF

    _options = {**OPTIONS, "cluster_number": None, "cluster_labels": None}

    def _extra_arguments(self, opts):
        number, labels = opts["cluster_number"], opts["cluster_labels"]
        if (number is None) != (labels is None):
            raise ValueError(
                "give 'cluster_number' and 'cluster_labels' together (or neither, to choose the clusters by k-means)"
            )
        if number is not None:
            if isinstance(number, bool) or not isinstance(number, numbers.Real) or number % 1 != 0:
                raise TypeError(f"'cluster_number' must be a whole number, got {number!r}")
            if not isinstance(labels, np.ndarray | list):
                raise TypeError(f"'cluster_labels' must be an array or a list, got {type(labels).__name__}")
            labels = np.asarray(labels)
            if labels.dtype.kind == "f":
                if np.any(labels % 1 != 0):
                    raise ValueError("'cluster_labels' must be whole numbers")
                labels = labels.astype(int)
            if len(np.unique(labels)) != int(number):
                raise ValueError(
                    f"'cluster_labels' holds {len(np.unique(labels))} distinct labels but cluster_number is {number}"
                )
        return {"labels": labels}

    def _architecture(self):
        return self.estimator.config["maf"]

    def _fitted(self):
        return self.estimator.members

    def _restore_settings(self):
        super()._restore_settings()
        self.cluster_number = self.estimator.n_clusters
        self.cluster_labels = self.estimator.labels

    def train(self, epochs=100, patience=None, early_stop=False, loss_type="sum", *, progress=True):
        """Train every cluster's flow; arguments as :meth:`MAF.train <margflow.compat.margarine.MAF.train>`.

        ``loss_history`` and ``test_loss_history`` are then lists with one
        list per cluster.
        """
        super().train(epochs, patience, early_stop, loss_type, progress=progress)

    def __call__(self, u, seed=1420):
        """Map points of the unit hypercube (n, d) to the parameters (``seed`` has no effect; see Notes)."""
        return self._out(self.estimator.transform(as_numpy(u)))

    def log_prob(self, params):
        return as_numpy(super().log_prob(params))

    def log_like(self, params, logevidence, prior_de=None):
        """``log P(θ) + log Z - log π(θ)``; ``prior_de`` default uniform on the box. Returns numpy."""
        return as_numpy(self._log_like(params, logevidence, prior_de))
