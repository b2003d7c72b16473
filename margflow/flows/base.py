"""Normalising flows in z-space: a TFP bijector chain on a standard normal or Student-t base."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from margflow.bounds import ndtr, parse_bounds, postprocess
from margflow.data import SampleData
from margflow.estimator import DensityEstimator, _ndtri_symmetric
from margflow.flows.train import History, forward_kl, jeffreys, kl_logvar, reverse_kl, train, weighted_nll

__all__ = ["FlowEstimator"]

tfd = tfp.distributions


@lru_cache(maxsize=64)
def _base_maps(graph):
    """The base's maps from and to the standard normal, as plain (not XLA) float64 graphs."""

    def from_normal(flat, eps):
        return graph._from_normal(flat, eps)

    def to_normal(flat, x):
        return graph._to_normal(flat, x)[0]

    return tuple(tf.function(f, autograph=False, jit_compile=False) for f in (from_normal, to_normal))


class FlowEstimator(DensityEstimator):
    """A density estimator whose z-space model is ``bijector(base)``, the base ``N(0, I)`` or a
    standard multivariate Student-t (``base="student_t"``).

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
        base = self._graph.reference_base(self._variables[0], self._dtype)
        self._flow = tfd.TransformedDistribution(base, self._bijector)

    def _model_args(self):
        return (self._variables, self._consts)

    # -- a Student-t base: its Rosenblatt map in float64, outside the XLA programs ----------------
    # (TFP's Student-t quantile compiled by XLA inside the sampling program crashed the process
    # once in a full test run; as a plain graph it is exact and fast enough)
    @property
    def base(self):
        """The base distribution: ``"normal"`` or ``"student_t"``."""
        return self._graph.base

    @property
    def dof(self):
        """Degrees of freedom of a Student-t base (learned in training); ``inf`` for the normal base."""
        if self.base == "normal":
            return float("inf")
        return float(self._graph.dof(tf.cast(self._variables[0], tf.float64)).numpy())

    def _from_normal_rows(self, eps):
        """Standard normal rows → parameters, through the base's map and the flow."""
        if len(eps):
            x = _base_maps(self._graph)[0](self._variables[0], tf.constant(eps, tf.float64)).numpy()
        else:
            x = eps
        return self._run("from_base_point", x, np.zeros(self.dim))

    def sample(self, n, seed=None):
        if self.base == "normal":
            return super().sample(n, seed)
        return self._from_normal_rows(np.random.default_rng(seed).standard_normal((int(n), self.dim)))

    sample.__doc__ = DensityEstimator.sample.__doc__

    def _transform(self, u):
        if self.base == "normal":
            return super()._transform(u)
        return self._from_normal_rows(_ndtri_symmetric(tf.constant(u, tf.float64)).numpy())

    def inverse_transform(self, theta):
        if self.base == "normal":
            return super().inverse_transform(theta)
        x = self._run("to_base_point", self._inside_rows(theta), self._interior)
        if not len(x):
            return x
        eps = _base_maps(self._graph)[1](self._variables[0], tf.constant(x, tf.float64))
        return ndtr(eps).numpy()

    inverse_transform.__doc__ = DensityEstimator.inverse_transform.__doc__

    def _training_data(self, log_density=None):
        """Training rows in z-space and their weights (zero-weight rows left out); with the
        samples' log-densities (one per row of ``self.data``), those in z-space as a last column."""
        keep = self.data.weights > 0
        z, log_det = self._pre.forward(self.data.theta[keep])
        z = z.numpy()
        if log_density is not None:
            z = np.column_stack([z, log_density[keep] - log_det.numpy()])
        return z, self.data.weights[keep]

    def _sample_log_density(self, log_density):
        """The target's log-density at each row of ``self.data``, from an array or a callable."""
        theta = self.data.theta
        if callable(log_density):
            values = np.asarray(log_density(theta), dtype=np.float64)
        else:
            values = np.asarray(log_density, dtype=np.float64)
            kept = self.data.kept
            if kept is not None and values.shape == (len(kept),) and len(kept) != len(theta):
                values = values[kept]  # one per input row: follow the rows the intake kept
        if values.shape != (len(theta),):
            raise ValueError(f"log_density must give one value per sample ({len(theta)}), got shape {values.shape}")
        used = self.data.weights > 0
        if not np.all(np.isfinite(values[used])):
            raise ValueError(
                f"log_density is not finite at {int(np.sum(~np.isfinite(values[used])))} weighted samples; "
                "a sample of the target must have a finite log-density"
            )
        return values

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
        loss="nll",
        log_density=None,
        logvar_weight=None,
        stop_on=None,
    ):
        """Train on the weighted samples by minimising the weighted negative log-likelihood
        (or a divergence, when the samples' target log-densities are known).

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
        loss : {"nll", "kl", "jeffreys", "kl_logvar"}
            ``"nll"``: the weighted negative log-likelihood (samples only).
            ``"kl"``: the forward ``KL(p‖q)``, the same gradient as ``"nll"``
            but a divergence as the loss value (exact with a normalised
            ``log_density``). ``"jeffreys"``: ``KL(p‖q) + KL(q‖p)``, the
            second term by self-normalised importance weights over each batch
            (Yamauchi et al. 2023); an unknown constant in ``log_density``
            cancels, so the loss is the divergence itself. That estimate of
            ``KL(q‖p)`` only sees where the samples are: it is good when the
            flow is close to the target, and a flow that cannot represent the
            target can lower it by moving mass away from the samples (measured:
            a one-layer MAF on a banana reached KL(q‖p) of 3.5e6 nats on
            fresh draws). Check the fit on fresh draws, or use ``"nll"``.
            ``"kl_logvar"``: ``KL(p‖q)`` plus ``logvar_weight`` times the
            weighted variance of ``log q - log p`` over each batch (the
            log-variance divergence, blind to the constant): the density
            values tell the flow the shape, which it then fits far closer than
            the likelihood alone. Too large a weight trades normalisation for
            shape: mass moves to where there are no samples. Measured on the
            banana, Jeffreys divergence on fresh draws, default MAF: at 10^5
            samples NLL 1.2e-3, weight 1, 3, 10: 5.6e-4, 1.5e-4, 1.9e-4, and
            100 leaks (J of nats); at 20,000 samples NLL 4.4e-3, weight 1, 3:
            3.6e-3, 6e-4. A small flow (3 layers of 32) on 4,000 samples:
            NLL 0.034, weight 0.3, 1, 3: 0.016, 0.039, 0.057, and 10 leaks.
            Check the fit on fresh draws (benchmarks/RESULTS-table1.md).
        log_density : array_like or callable, optional
            The target's log-density at the samples (up to a constant), one
            per sample, or a function of (n, d) parameters; needed for
            ``"kl"``, ``"jeffreys"`` and ``"kl_logvar"``.
        logvar_weight : float, optional
            The weight of the log-variance term of ``"kl_logvar"`` (default 3).
        stop_on : {None, "likelihood", "loss"}
            What the held-out rows are scored on, for the learning-rate schedule,
            early stopping and the epoch kept. ``"loss"``: the training loss.
            ``"likelihood"``: the held-out ``KL(p‖q)`` (with ``log_density``; the
            negative log-likelihood up to a constant). ``None`` (default):
            ``"likelihood"`` for ``"kl_logvar"``, ``"loss"`` for the others.
            For ``"kl_logvar"`` the choice matters. The held-out likelihood is
            robust but coarse: its scatter between epochs (about 3e-5 nats on
            20,000 held-out banana rows) stops a fit whose shape is still
            improving. The held-out log-variance is precise (its relative error is
            √(2/n)), so the fit runs on to its better epochs. Measured on the
            banana, 10^5 samples, Jeffreys divergence on 10^6-2×10^6 fresh draws
            (side runs, stop 21): RealNVP with gelu, ``"likelihood"`` 4.1e-5,
            ``"loss"`` 1.75e-5; the MAF with silu gains nothing (2.25e-5 and
            2.22e-5), with tanh little (1.6e-4 and 1.4e-4). But every
            held-out row counts quadratically in the log-variance, so one row
            with a large misfit (a point pressed against a bound) can decide the
            epoch: keep the default when the posterior meets its prior bounds.

        Returns
        -------
        History
        """
        losses = {"nll": weighted_nll, "kl": forward_kl, "jeffreys": jeffreys, "kl_logvar": kl_logvar}
        extra = {}
        if loss == "kl_logvar":
            weight = 3.0 if logvar_weight is None else float(logvar_weight)
            if not (np.isfinite(weight) and weight >= 0):
                raise ValueError(f"logvar_weight must be a finite number >= 0, got {logvar_weight!r}")
            losses["kl_logvar"] = lambda fn: kl_logvar(fn, weight)
            extra = {"logvar_weight": weight}
        elif logvar_weight is not None:
            raise ValueError(f'logvar_weight is the weight of loss="kl_logvar"; loss="{loss}" takes none')
        if loss == "reverse_kl":
            raise ValueError(
                'loss="reverse_kl" fits an unnormalised log-density with no samples: use '
                f"{type(self).__name__}.variational(log_density, bounds=...)"
            )
        if loss not in losses:
            raise ValueError(f"loss must be one of {sorted(losses)}, got {loss!r}")
        if (loss == "nll") != (log_density is None):
            raise ValueError(
                f'loss="{loss}" '
                + ("needs log_density" if log_density is None else "takes no log_density")
                + ': "kl" and "jeffreys" use the samples\' target log-densities, "nll" the samples alone'
            )
        if stop_on not in (None, "likelihood", "loss"):
            raise ValueError(f'stop_on must be None, "likelihood" or "loss", got {stop_on!r}')
        if stop_on == "likelihood" and loss == "nll":
            stop_on = "loss"  # the same thing
        if stop_on is None:
            stop_on = "likelihood" if loss == "kl_logvar" else "loss"
        if loss != "nll":
            extra["stop_on"] = stop_on
        if log_density is not None:  # kept for bootstrap refits (not saved in the model file)
            self._log_density = self._sample_log_density(log_density)
        z, w = self._training_data(None if log_density is None else self._log_density)
        return self._train(
            loss,
            losses[loss](self._graph.log_prob),
            z,
            w,
            # by default kl_logvar stops on the held-out likelihood: the log-variance term is quadratic
            # in each row's misfit, and one held-out row against a bound decided it (the curved benchmark)
            val_loss_fn=forward_kl(self._graph.log_prob) if stop_on == "likelihood" else None,
            seed=self.seed if seed is None else seed,
            progress=progress,
            config=extra,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            patience=patience,
            validation_fraction=validation_fraction,
            clip_norm=clip_norm,
            ema_decay=ema_decay,
        )

    def _train(self, loss, loss_fn, x, w, *, seed, progress, jit=True, config=None, val_loss_fn=None, **settings):
        """Run the shared training loop on rows ``x`` with weights ``w``, continuing the history,
        and record the settings (``fit_config``, with the loss's own ``config``) that a refit repeats."""
        self.fit_config = {**settings, **(config or {}), "seed": seed, "loss": loss}
        self.history = train(
            loss_fn,
            self._variables,
            x,
            w,
            consts=self._consts,
            val_loss_fn=val_loss_fn,
            seed=seed,
            progress=progress,
            dtype=self._dtype,
            history=self.history,
            jit=jit,
            **settings,
        )
        return self.history

    def _fit_kwargs(self):
        config = getattr(self, "fit_config", None)
        if config is None:
            raise ValueError(f"this {type(self).__name__} is untrained; call fit() first")
        out = {k: v for k, v in config.items() if k != "seed"}
        if out.get("loss") == "reverse_kl":
            raise ValueError(
                "a variational (reverse-KL) fit has no samples to refit on; for the scatter between fits, "
                "fit again with other seeds"
            )
        if out.get("loss", "nll") != "nll":
            if getattr(self, "_log_density", None) is None:
                raise ValueError(
                    f'this flow was trained with loss="{out["loss"]}" and its samples\' log-densities are not '
                    "kept in the model file; refit it with log_density before refitting it again"
                )
            out["log_density"] = self._log_density
        return out

    @classmethod
    def variational(
        cls,
        log_density,
        *,
        bounds,
        params=None,
        loc=None,
        scale=None,
        n_draws=20_000,
        epochs=1000,
        batch_size=256,
        learning_rate=3e-3,
        patience=50,
        validation_fraction=0.2,
        clip_norm=10.0,
        ema_decay=0.99,
        seed=0,
        progress=True,
        **settings,
    ):
        """Fit the flow to an unnormalised log-density with no samples: minimise the reverse KL.

        The flow draws its own points and minimises ``KL(q‖p) - log Z =
        E_q[log q - log p̃]`` through its sampling map (variational
        inference). The draws are a fixed pool of ``n_draws`` base points,
        of which ``validation_fraction`` are held out for early stopping; the
        loss is the shared training loop's. The reverse KL is mode-seeking:
        where ``q`` puts no mass it is not penalised, so a flow started in
        one mode of a multimodal target can stay there. Check
        ``result.evidence.ess_fraction``.

        Afterwards the estimator's samples are ``n_draws`` fresh draws of
        the flow with importance weights ``p̃/q`` (:func:`margflow.reweight`),
        so statistics averaged over them (:func:`margflow.marginal_stats`)
        are those of ``p``, and ``evidence`` holds the importance-sampling
        ``logZ ± logZ_err`` of ``p̃`` and the effective sample size.

        Parameters
        ----------
        log_density : callable
            ``log p̃(θ)`` as a TensorFlow function of a float64 tensor of
            shape (n, d), returning (n,); it must be differentiable (written
            with ``tf`` operations).
        bounds : (d, 2) array or dict
            The support: as for the constructor (``None`` or ``±inf`` sides
            open). Needed to know ``d`` and the box map.
        params : list of str, optional
            Parameter names (default ``"0", "1", ...``); required with a dict.
        loc, scale : float or (d,) array, optional
            Centre and width of the starting Gaussian of every parameter that
            is not bounded on both sides (required for those). Parameters
            bounded on both sides start uniform over their range.
        n_draws : int
            Base draws for training (and flow draws for the importance weights).
        epochs, batch_size, learning_rate, patience, validation_fraction, clip_norm, ema_decay, seed, progress
            As for :meth:`fit`.
        **settings
            Constructor keywords (architecture, ``transform``, ``blend``).

        Returns
        -------
        FlowEstimator
            Trained, with ``history`` and ``evidence``.
        """
        if not callable(log_density):
            raise ValueError("log_density must be a function of (n, d) parameters")
        names = params
        if names is None:
            if isinstance(bounds, dict):
                raise ValueError("give params with a dict of bounds (they fix the order of the parameters)")
            names = [str(i) for i in range(len(np.asarray(bounds, dtype=object)))]
        box = parse_bounds(bounds, list(names))
        d = len(box)
        rng = np.random.default_rng(seed)
        two = np.all(np.isfinite(box), axis=1)
        if not two.all() and (loc is None or scale is None):
            open_ = [names[i] for i in np.flatnonzero(~two)]
            raise ValueError(f"{open_} are not bounded on both sides: give loc and scale of a starting Gaussian")
        # reference points: they set the whitening (the flow's starting Gaussian), nothing else
        ref = rng.uniform(np.where(two, box[:, 0], 0.0), np.where(two, box[:, 1], 1.0), size=(4096, d))
        if not two.all():
            g = np.broadcast_to(np.asarray(loc, float), (d,)) + np.broadcast_to(
                np.asarray(scale, float), (d,)
            ) * rng.normal(size=(4096, d))
            lo, hi = box[:, 0], box[:, 1]
            g = np.where(np.isfinite(lo) & (g < lo), 2 * lo - g, g)  # reflect into a one-sided range
            g = np.where(np.isfinite(hi) & (g > hi), 2 * hi - g, g)
            ref = np.where(two, ref, g)
        est = cls(ref, params=list(names), bounds=box, seed=seed, **settings)
        target_z = est._target_in_z(log_density)
        eps = np.random.default_rng([seed, 1]).normal(size=(int(n_draws), d))
        graph = est._graph
        est._train(
            "reverse_kl",
            reverse_kl(graph.log_prob, graph.forward, target_z),
            eps,
            np.ones(len(eps)),
            seed=seed,
            progress=progress,
            # XLA cannot differentiate the sequential inverse; a Student-t base's quantile stays out of it
            jit=not graph.sequential_forward and graph.base == "normal",
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            patience=patience,
            validation_fraction=validation_fraction,
            clip_norm=clip_norm,
            ema_decay=ema_decay,
        )
        from margflow.evidence import reweight

        def log_target(theta):
            return np.asarray(log_density(tf.constant(theta, tf.float64)), dtype=np.float64)

        est.evidence = reweight(est, log_target, int(n_draws), seed=seed + 1, progress=progress)
        res = est.evidence
        est.data = SampleData(res.samples, res.weights, est.params, est.bounds, logZ=res.logZ)
        return est

    def _target_in_z(self, log_density):
        """``log p̃`` as a function of z (float32 in and out), with the map's log-det; checks that
        ``log_density`` is a differentiable TensorFlow function."""
        probe = tf.constant(self.data.theta[:4])
        with tf.GradientTape() as tape:
            tape.watch(probe)
            try:
                out = log_density(probe)
            except Exception as exc:
                raise ValueError(
                    "log_density must be a TensorFlow function of a float64 tensor (n, d) returning (n,); "
                    f"calling it on one failed: {type(exc).__name__}: {exc}"
                ) from exc
        if not isinstance(out, tf.Tensor) or tuple(out.shape) != (len(probe),):
            raise ValueError(
                f"log_density must return a tensor of shape (n,) for n rows, got {type(out).__name__} "
                f"of shape {getattr(out, 'shape', None)}; write it with tf operations"
            )
        if tape.gradient(out, probe) is None:
            raise ValueError("log_density is not differentiable in TensorFlow; write it with tf operations")
        structure, pre, dtype = self._pre.structure, self._pre.tensors, self._dtype

        def target(z):
            theta, log_det = postprocess(structure, pre, tf.cast(z, tf.float64))
            return tf.cast(log_density(theta) + log_det, dtype)

        return target

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
