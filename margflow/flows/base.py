"""Normalising flows in z-space: a TFP bijector chain on a standard normal base."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

from margflow.estimator import DensityEstimator
from margflow.flows.train import History, train, weighted_nll

__all__ = ["FlowEstimator"]

tfd = tfp.distributions


class FlowEstimator(DensityEstimator):
    """A density estimator whose z-space model is ``bijector(N(0, I))``.

    Subclasses build, in ``_build(config)``:

    - ``self._graph``: the model as pure TensorFlow functions of its weights,
      ``log_prob(variables, consts, z)``, ``forward(variables, consts, eps)``
      (base → z) and ``inverse(variables, consts, z)`` (z → base, log-det);
      one object per architecture, so the programs traced from it are shared
      by every flow with that architecture (see :class:`DensityEstimator`);
    - ``self._variables`` (trainable, float32) and ``self._consts`` (fixed
      tensors such as permutations);
    - ``self._bijector``: the same model as a TFP bijector from the base to z,
      the reference the fused functions are tested against;

    and report their configuration in ``self.config``. Training goes through
    the shared loop, :func:`margflow.flows.train.train`.
    """

    _dtype = tf.float32

    def _make_distribution(self):
        d = self.dim
        base = tfd.MultivariateNormalDiag(loc=tf.zeros(d, self._dtype), scale_diag=tf.ones(d, self._dtype))
        self._flow = tfd.TransformedDistribution(base, self._bijector)

    def _model_args(self):
        return (self._variables, self._consts)

    def _training_data(self):
        """Training rows in z-space and their weights (zero-weight rows left out)."""
        keep = self.data.weights > 0
        z, _ = self._pre.forward(self.data.theta[keep])
        return z.numpy(), self.data.weights[keep]

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
        """Train on the weighted samples by minimising the weighted negative log-likelihood.

        Minibatches are shuffled each epoch; the learning rate halves when the
        validation loss stalls for ``patience // 5`` epochs; training stops
        after ``patience`` epochs without improvement and the best epoch's
        weights are restored. A second call continues from the current weights
        and extends the same history.

        Parameters
        ----------
        epochs, batch_size, learning_rate, patience, validation_fraction
            See :func:`margflow.flows.train.train`.
        clip_norm : float
            Gradient clipping.
        ema_decay : float
            Validate, stop on and keep an exponential moving average of the
            weights with this per-step decay; 0 keeps the raw weights. See
            :func:`margflow.flows.train.train`.
        seed : int, optional
            Seeds the validation split and shuffling; default the estimator's seed.
        progress : bool
            Show a progress bar with the live loss.

        Returns
        -------
        History
        """
        z, w = self._training_data()
        seed = self.seed if seed is None else seed
        self.fit_config = {
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "patience": patience,
            "validation_fraction": validation_fraction,
            "clip_norm": clip_norm,
            "ema_decay": ema_decay,
            "seed": seed,
        }
        self.history = train(
            weighted_nll(self._graph.log_prob),
            self._variables,
            z,
            w,
            consts=self._consts,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            patience=patience,
            validation_fraction=validation_fraction,
            clip_norm=clip_norm,
            ema_decay=ema_decay,
            seed=seed,
            progress=progress,
            dtype=self._dtype,
            history=self.history,
        )
        return self.history

    def _fit_kwargs(self):
        config = getattr(self, "fit_config", None)
        if config is None:
            raise ValueError(f"this {type(self).__name__} is untrained; call fit() first")
        return {k: v for k, v in config.items() if k != "seed"}

    def _get_state(self):
        arrays = {f"var{i:03d}": v.numpy() for i, v in enumerate(self._variables)}
        config = dict(self.config)
        config["fit"] = getattr(self, "fit_config", None)
        config["history"] = None if self.history is None else self.history.to_dict()
        return config, arrays

    def _set_state(self, config, arrays):
        self.config = {k: v for k, v in config.items() if k not in ("fit", "history")}
        self._build(self.config)
        n = len([k for k in arrays if k.startswith("var")])
        if n != len(self._variables):
            raise ValueError(f"the file holds {n} weight arrays but the architecture has {len(self._variables)}")
        for i, v in enumerate(self._variables):
            a = arrays[f"var{i:03d}"]
            if tuple(a.shape) != tuple(v.shape):
                raise ValueError(f"weight {i} has shape {a.shape} in the file, {tuple(v.shape)} in the architecture")
            v.assign(a)
        if config.get("fit") is not None:
            self.fit_config = config["fit"]
        self.history = None if config.get("history") is None else History.from_dict(config["history"])
