"""margarine 1.x's ``MAF`` on margflow's masked autoregressive flow."""

from __future__ import annotations

import margflow
from margflow.compat.margarine._common import (
    Compat,
    check_architecture,
    check_train,
    parameter_labels,
    pop_options,
    read_input,
)

__all__ = ["MAF"]

OPTIONS = {
    "weights": None,
    "number_networks": 6,
    "learning_rate": 1e-3,
    "hidden_layers": [50, 50],
    "activation_func": "tanh",
    "theta_min": None,
    "theta_max": None,
    "parameters": None,
    "seed": 0,
}


class _Flow(Compat):
    """What margarine's ``MAF`` and ``clusterMAF`` share: the keywords, the architecture
    checks, building the margflow estimator, ``train`` and the loss histories."""

    _options = OPTIONS
    learning_rate = 1e-3  # margarine's default; a trained file's own rate replaces it on load

    def __init__(self, theta, **kwargs):
        name = type(self).__name__
        opts = pop_options(kwargs, name, self._options)
        n_layers, learning_rate, hidden, activation = check_architecture(
            opts["number_networks"], opts["learning_rate"], opts["hidden_layers"], opts["activation_func"]
        )
        extra = self._extra_arguments(opts)
        samples, weights, params, bounds, box = read_input(
            name, theta, opts["weights"], opts["parameters"], opts["theta_min"], opts["theta_max"]
        )
        est = self._margflow_class(
            samples,
            params=params,
            bounds=bounds,
            weights=weights,
            n_layers=n_layers,
            hidden=hidden,
            activation=activation,
            seed=opts["seed"],
            **extra,
        )
        self._adopt(est, parameter_labels(theta, opts["parameters"], est), box)
        self._restore_settings()
        self.learning_rate = learning_rate

    def _extra_arguments(self, opts):
        """Keywords of the margflow estimator beyond the architecture (checked)."""
        return {}

    def _architecture(self):
        """The estimator's config holding ``n_layers``, ``hidden`` and ``activation``."""
        return self.estimator.config

    def _restore_settings(self):
        cfg = self._architecture()
        self.number_networks = cfg["n_layers"]
        self.hidden_layers = list(cfg["hidden"])
        self.activation_func = cfg["activation"]
        self._histories()
        fit = getattr(self._fitted()[0], "fit_config", None)
        if fit is not None:
            self.learning_rate = float(fit["learning_rate"])

    def _fitted(self):
        """The margflow flows that ``fit`` trains (one for a MAF)."""
        return [self.estimator]

    def _histories(self):
        """Set the margarine history attributes from the estimator's; returns the trained flows' histories."""
        hist = [f.history for f in self._fitted() if f.history is not None]
        self.history = self.estimator.history
        self.loss_history = [list(h.loss) for h in hist]
        self.test_loss_history = [list(h.val_loss) for h in hist]
        return hist

    def train(self, epochs=100, patience=None, early_stop=False, loss_type="sum", *, progress=True):
        """Train the flow: ``epochs`` passes over the training rows (minibatches of 256).

        Parameters
        ----------
        epochs : int
        patience : int, optional
            Epochs without a better validation loss before stopping, when
            ``early_stop``; default 2% of ``epochs``.
        early_stop : bool
            Stop on the validation loss. Either way the weights of the best
            validation epoch are the ones kept (margarine kept the last epoch
            unless it stopped early).
        loss_type : {'sum', 'mean'}
            Accepted for margarine's signature; the loss is the weighted mean
            negative log-likelihood either way (the scale does not move Adam).
        progress : bool
            margflow's progress bar.
        """
        patience = check_train(epochs, patience, early_stop, loss_type)
        self.estimator.fit(epochs=int(epochs), learning_rate=self.learning_rate, patience=patience, progress=progress)
        for h in self._histories():
            if h.stopped_early:
                print(f"Early stopped. Epochs used = {h.epochs}. Minimum at epoch = {h.best_epoch}")


class MAF(_Flow):
    """margarine 1.x's ``MAF(theta, **kwargs)``, fit and evaluated by :class:`margflow.MAF`.

    Parameters
    ----------
    theta : ndarray (n, d), tf.Tensor, or anesthetic NestedSamples / MCMCSamples
    **kwargs
        margarine's keywords: ``weights``, ``number_networks`` (6),
        ``learning_rate`` (1e-3), ``hidden_layers`` ([50, 50]),
        ``activation_func`` ('tanh'), ``theta_min``, ``theta_max``,
        ``parameters``; and margflow's ``seed`` (0). A misspelt keyword is a
        ``TypeError`` (margarine ignored it).

    Notes
    -----
    What changes from margarine 1.4.2 (see :mod:`margflow.compat.margarine`):
    minibatch training that keeps the best validation epoch, ``-inf`` (not
    NaN) outside the box, float64 tensors, a warning when the box is guessed,
    an error (not a silent drop) for samples outside a given box.

    Examples
    --------
    >>> import numpy as np
    >>> from margflow.compat.margarine import MAF
    >>> theta = np.random.default_rng(0).normal(size=(500, 2))
    >>> bij = MAF(theta, theta_min=np.full(2, -6.0), theta_max=np.full(2, 6.0), hidden_layers=[8])
    >>> bij.train(5, progress=False)
    >>> bij.log_prob(np.array([[0.0, 7.0]])).numpy()
    array([-inf])
    """

    _margflow_class = margflow.MAF

    def _histories(self):
        hist = super()._histories()
        # margarine's MAF keeps one flat list per history
        self.loss_history = self.loss_history[0] if hist else []
        self.test_loss_history = self.test_loss_history[0] if hist else []
        return hist

    def log_like(self, params, logevidence, prior_de=None):
        """``log L(θ) = log P(θ) + log Z - log π(θ)``, the nuisance-free likelihood.

        ``prior_de`` is a density estimator of the prior (a compat or margflow
        one); default uniform on ``[theta_min, theta_max]``.
        """
        return self._log_like(params, logevidence, prior_de)
