"""What margarine 1.x's ``MAF``, ``KDE`` and ``clusterMAF`` share: input handling, the
prior box, the hypercube transform, sampling, ``log_prob``, ``log_like``, save and load."""

from __future__ import annotations

import numbers
import warnings

import numpy as np

import margflow
from margflow.data import _is_anesthetic, kish_ess, load_samples
from margflow.estimator import DensityEstimator
from margflow.io import ModelFileError
from margflow.likelihood import NuisanceFreeLikelihood


def as_numpy(x):
    """A numpy float64 copy of a numpy array, list or TensorFlow tensor."""
    return np.array(x, dtype=np.float64)


def check_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"'{name}' must be an integer, got {value!r}")
    return int(value)


def check_architecture(number_networks, learning_rate, hidden_layers, activation_func):
    """margarine's TypeErrors for a bad flow configuration; returns the values margflow takes."""
    check_int("number_networks", number_networks)
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real):
        raise TypeError(
            f"'learning_rate' must be a number, got {learning_rate!r} (margflow's training loop lowers the rate "
            "on plateaus itself, so a tf.keras schedule is not taken)"
        )
    if not isinstance(hidden_layers, list | tuple):
        raise TypeError(f"'hidden_layers' must be a list of integers, got {hidden_layers!r}")
    for h in hidden_layers:
        check_int("hidden_layers", h)
    if not isinstance(activation_func, str):
        raise TypeError(f"'activation_func' must be the name of an activation, got {activation_func!r}")
    return int(number_networks), float(learning_rate), tuple(int(h) for h in hidden_layers), activation_func


def check_train(epochs, patience, early_stop, loss_type):
    """margarine's checks of ``train``; returns the patience margflow's loop gets."""
    epochs = check_int("epochs", epochs)
    if not isinstance(early_stop, bool):
        raise TypeError(f"'early_stop' must be a boolean, got {early_stop!r}")
    if patience is not None:
        patience = check_int("patience", patience)
    if loss_type not in ("sum", "mean"):
        raise ValueError(f"'loss_type' must be 'sum' or 'mean', got {loss_type!r}")
    if epochs < 1:
        raise ValueError(f"'epochs' must be at least 1, got {epochs}")
    if not early_stop:
        return epochs  # every epoch runs; the best validation epoch is kept
    return max(1, round(epochs / 50) if patience is None else patience)


def pop_options(kwargs, cls_name, defaults):
    """Take margarine's keyword arguments out of ``kwargs``; anything left is a misspelling."""
    out = {k: kwargs.pop(k, v) for k, v in defaults.items()}
    if kwargs:
        raise TypeError(
            f"{cls_name}() got unexpected keyword argument(s) {sorted(kwargs)}; it takes {sorted(defaults)}"
        )
    return out


def guess_box(theta, weights):
    """margarine 1.x's prior box from the samples: the range stretched by one expected gap
    at each end, ``((n - 2) max - min) / (n - 3)``, with ``n`` Kish's effective sample size."""
    n = kish_ess(weights)
    if n <= 3:
        raise ValueError(f"the samples' effective size is {n:.3g}; give theta_min and theta_max")
    hi, lo = theta.max(axis=0), theta.min(axis=0)
    return ((n - 2) * lo - hi) / (n - 3), ((n - 2) * hi - lo) / (n - 3)


def read_input(cls_name, theta, weights, parameters, theta_min, theta_max):
    """The samples, weights and parameters as margflow takes them, and the bounds.

    Returns ``(samples, weights, params, bounds, box)``: ``samples`` is the
    anesthetic object itself when one was given (so nested-sampling weights
    keep their uncertainty in the statistics); ``bounds`` are the sides the
    user gave (a guessed side is open: a guess is not a prior bound, and a
    box that hugs the samples spoils the fit); ``box`` is the prior box of
    margarine's uniform-prior defaults, guessed sides included."""
    weights = None if weights is None else as_numpy(weights)  # with anesthetic input margflow refuses them
    if _is_anesthetic(theta):
        samples = theta
        params = None if parameters is None else [str(p) for p in parameters]
    else:
        samples = as_numpy(theta)
        if samples.ndim != 2:
            raise ValueError(f"theta must be an (n, d) array of samples, got shape {samples.shape}")
        params = None
    given = [None if t is None else np.atleast_1d(as_numpy(t)) for t in (theta_min, theta_max)]
    if any(t is None for t in given):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the estimator says it again, once
            data = load_samples(samples, params=params, weights=weights)
        guess = guess_box(data.theta, data.weights)
        box = [g if t is None else t for g, t in zip(guess, given)]
        warnings.warn(
            f"{cls_name}: theta_min/theta_max not given, so the prior box of the uniform-prior defaults "
            f"(calculate(), log_like) is margarine 1.x's guess from the sample range, "
            f"[{np.array2string(box[0], precision=4)}, {np.array2string(box[1], precision=4)}]: the statistics "
            "and likelihoods are wrong if your prior differs. The density itself is fit without that bound. "
            "Pass theta_min= and theta_max= (the true prior bounds).",
            stacklevel=3,
        )
    else:
        box = given
    open_ = [np.full_like(box[0], -np.inf), np.full_like(box[1], np.inf)]
    bounds = np.column_stack([o if t is None else t for o, t in zip(open_, given)])
    return samples, weights, params, bounds, np.column_stack(box)


def parameter_labels(theta, parameters, estimator):
    """``parameters`` as margarine keeps them: the user's list, the anesthetic column labels
    used, or None for array input."""
    if parameters is not None:
        return list(parameters)
    if _is_anesthetic(theta):
        cols = theta.columns.get_level_values(0) if getattr(theta.columns, "nlevels", 1) > 1 else theta.columns
        by_name = {str(c): c for c in cols}
        return [by_name[p] for p in estimator.params]
    return None


def unwrap(density):
    """The margflow estimator inside a compat object (prior_de), the estimator itself, or a
    callable log-density for any other object with ``log_prob``."""
    if isinstance(density, Compat):
        return density.estimator
    if density is None or isinstance(density, DensityEstimator):
        return density
    if hasattr(density, "log_prob"):
        return lambda x: as_numpy(density.log_prob(x))
    raise TypeError(f"a prior density estimator needs a log_prob method; got {type(density).__name__}")


_BOX = "margarine_box"  # the key of the prior box in the estimator's notes


class Compat:
    """Base of the margarine 1.x classes: one margflow estimator inside, margarine's names outside.

    Attributes
    ----------
    estimator : margflow.DensityEstimator
        The margflow estimator doing the work; use it for everything margflow
        adds (``transform`` in float64, seeds, ``mf.marginal_stats`` with an
        ensemble, plots).
    theta, sample_weights : ndarray
        The samples and weights fit to (rows with a non-finite value dropped).
    theta_min, theta_max : ndarray
        The prior box of the uniform-prior defaults (``box``, (d, 2)).
    parameters : list or None
    n : float
        Kish's effective sample size of the weights.
    """

    _margflow_class = DensityEstimator
    _returns_tensors = True  # margarine's MAF answers in tf.Tensor; its KDE log_prob in numpy

    def _adopt(self, estimator, parameters=None, box=None):
        self.estimator = estimator
        self.parameters = parameters
        box = estimator.notes.get(_BOX, estimator.bounds) if box is None else box
        self.box = np.asarray(box, dtype=np.float64)
        if not np.all(np.isfinite(self.box)):
            raise ValueError(f"the prior box {self.box.tolist()} is not finite")
        estimator.notes[_BOX] = self.box.tolist()  # saved with the model
        self.theta = estimator.data.theta
        self.sample_weights = estimator.data.weights
        self.theta_min = self.box[:, 0].copy()
        self.theta_max = self.box[:, 1].copy()
        self.n = kish_ess(self.sample_weights)

    @property
    def box_guessed(self):
        """True where the box has a side the estimator was not bounded by (margarine's guess)."""
        return bool(np.any(self.box != self.estimator.bounds))

    def _prior(self, prior_de):
        """What margflow takes as the prior: ``prior_de`` unwrapped, else uniform on the box."""
        prior = unwrap(prior_de)
        return self.box if prior is None else prior

    def _out(self, x):
        if not self._returns_tensors:
            return x
        import tensorflow as tf

        return tf.constant(x, dtype=tf.float64)

    def __call__(self, u):
        """Map points of the unit hypercube (n, d) to the parameters: the nested-sampling prior transform."""
        return self._out(self.estimator.transform(as_numpy(u)))

    def sample(self, length=1000, *, seed=None):
        """``length`` draws (fresh ones each call unless ``seed`` is given)."""
        length = check_int("length", length)
        return self._out(self.estimator.sample(length, seed=seed))

    def _at(self, fn, params):
        """``fn`` of (n, d) points, or of one (d,) point as a scalar, as margarine answered."""
        x = as_numpy(params)
        out = fn(np.atleast_2d(x))
        return self._out(out[0] if x.ndim == 1 else out)

    def log_prob(self, params):
        """Log-density at (n, d) points, or at one (d,) point; ``-inf`` outside the prior box, never NaN."""
        return self._at(self.estimator.log_prob, params)

    def _log_like(self, params, logevidence, prior_de):
        if prior_de is None:
            warnings.warn("Assuming prior is uniform! (on [theta_min, theta_max])", stacklevel=3)
        like = NuisanceFreeLikelihood(self.estimator, prior=self._prior(prior_de), logZ=float(logevidence))
        return self._at(like, params)

    def save(self, filename):
        """Write a margflow model file (``margflow.load`` reads it too); no pickle."""
        self.estimator.save(filename)

    @classmethod
    def load(cls, filename):
        """Read a file written by :meth:`save`."""
        try:
            est = margflow.load(filename)
        except ModelFileError as err:
            raise ModelFileError(
                f"{err}. margflow.compat.margarine reads files written by its own save(); a pickle written "
                "by margarine itself cannot be read (unpickling runs arbitrary code, and margarine's networks "
                "have a random input order that the file does not keep): fit the samples again"
            ) from None
        if not isinstance(est, cls._margflow_class):
            raise ModelFileError(
                f"{filename!r} holds a margflow {type(est).__name__}, not what {cls.__name__}.load reads "
                f"(a {cls._margflow_class.__name__})"
            )
        obj = cls.__new__(cls)
        obj._adopt(est)
        obj._restore_settings()
        return obj

    def _restore_settings(self):
        """The margarine attributes a loaded file implies (the subclass's settings)."""

    def __repr__(self):
        return f"margflow.compat.margarine.{type(self).__name__}({self.estimator!r})"
