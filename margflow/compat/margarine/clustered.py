"""margarine 1.x's ``clusterMAF`` on margflow's :class:`~margflow.PiecewiseMAF`."""

from __future__ import annotations

import numbers

import numpy as np

import margflow
from margflow.compat.margarine._common import (
    Compat,
    as_numpy,
    check_architecture,
    check_train,
    parameter_labels,
    pop_options,
    read_input,
)

__all__ = ["clusterMAF"]

_OPTIONS = {
    "weights": None,
    "number_networks": 6,
    "learning_rate": 1e-3,
    "hidden_layers": [50, 50],
    "activation_func": "tanh",
    "cluster_number": None,
    "cluster_labels": None,
    "theta_min": None,
    "theta_max": None,
    "parameters": None,
    "seed": 0,
}


class clusterMAF(Compat):  # noqa: N801 -- margarine's name
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
    _returns_tensors = True

    def __init__(self, theta, **kwargs):
        opts = pop_options(kwargs, "clusterMAF", _OPTIONS)
        n_layers, self.learning_rate, hidden, activation = check_architecture(
            opts["number_networks"], opts["learning_rate"], opts["hidden_layers"], opts["activation_func"]
        )
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
        samples, weights, params, bounds, box = read_input(
            "clusterMAF", theta, opts["weights"], opts["parameters"], opts["theta_min"], opts["theta_max"]
        )
        est = margflow.PiecewiseMAF(
            samples,
            params=params,
            bounds=bounds,
            weights=weights,
            labels=labels,
            n_layers=n_layers,
            hidden=hidden,
            activation=activation,
            seed=opts["seed"],
        )
        self._adopt(est, parameter_labels(theta, opts["parameters"], est), box)
        self._restore_settings()
        self.learning_rate = float(opts["learning_rate"])

    def _restore_settings(self):
        est = self.estimator
        cfg = est.config["maf"]
        self.number_networks = cfg["n_layers"]
        self.hidden_layers = list(cfg["hidden"])
        self.activation_func = cfg["activation"]
        self.cluster_number = est.n_clusters
        self.cluster_labels = est.labels
        fit = getattr(est.members[0], "fit_config", None)
        self.learning_rate = 1e-3 if fit is None else float(fit["learning_rate"])
        self._histories([m.history for m in est.members])

    def _histories(self, histories):
        self.history = histories
        self.loss_history = [[] if h is None else list(h.loss) for h in histories]
        self.test_loss_history = [[] if h is None else list(h.val_loss) for h in histories]

    def train(self, epochs=100, patience=None, early_stop=False, loss_type="sum", *, progress=True):
        """Train every cluster's flow; arguments as :meth:`MAF.train <margflow.compat.margarine.MAF.train>`.

        ``loss_history`` and ``test_loss_history`` are then lists with one
        list per cluster.
        """
        patience = check_train(epochs, patience, early_stop, loss_type)
        histories = self.estimator.fit(
            epochs=int(epochs), learning_rate=self.learning_rate, patience=patience, progress=progress
        )
        self._histories(histories)

    def __call__(self, u, seed=1420):
        """Map points of the unit hypercube (n, d) to the parameters (``seed`` has no effect; see Notes)."""
        return self._out(self.estimator.transform(as_numpy(u)))

    def log_prob(self, params):
        return as_numpy(super().log_prob(params))

    def log_like(self, params, logevidence, prior_de=None):
        """``log P(θ) + log Z - log π(θ)``; ``prior_de`` default uniform on the box. Returns numpy."""
        return as_numpy(self._log_like(params, logevidence, prior_de))
