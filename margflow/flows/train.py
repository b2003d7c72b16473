"""The one training loop of margflow.

Every trainable estimator and every loss goes through :func:`train`: shuffled
minibatches, Adam, a learning rate that halves when the validation loss stalls,
gradient clipping, an optional moving average of the weights, early stopping
that restores the best weights by value, a clear error when the loss stops
being finite, and a tqdm progress bar.

Losses are pure functions of ``(variables, consts, x, w)``. An epoch (a
``tf.while_loop`` over minibatches around an XLA-compiled step, then the
validation loss) is traced once per loss function, batch size, weight shapes
and averaging, and reused by every later model of that shape in the process: the
first fit of an architecture pays about a second of tracing and a few of XLA
compilation, the next ones none.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from functools import cache, lru_cache

import numpy as np
import tensorflow as tf

from margflow import _xla

__all__ = [
    "History",
    "TrainingDivergedError",
    "train",
    "split_indices",
    "weighted_nll",
    "forward_kl",
    "jeffreys",
    "reverse_kl",
]


@dataclass
class History:
    """What happened during :func:`train`.

    Attributes
    ----------
    loss, val_loss : list of float
        Mean training loss and validation loss of each epoch.
    learning_rate : list of float
        Learning rate used in each epoch.
    best_epoch : int
        Epoch (0-based) whose weights were kept; -1 before any training.
    best_val_loss : float
    stopped_early : bool
        True when training ended because ``patience`` epochs passed without
        improvement.
    wall_time : float
        Seconds spent in training.
    """

    loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    learning_rate: list = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = float("inf")
    stopped_early: bool = False
    wall_time: float = 0.0

    @property
    def epochs(self):
        """Number of epochs run."""
        return len(self.loss)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


class TrainingDivergedError(FloatingPointError):
    """The loss became non-finite; the best weights so far were restored.

    Attributes
    ----------
    history : History
    """

    def __init__(self, message, history):
        super().__init__(message)
        self.history = history


def split_indices(n, validation_fraction, seed):
    """Seeded split of ``range(n)`` into training and validation indices."""
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(validation_fraction * n))
    if validation_fraction > 0 and (n_val < 1 or n - n_val < 1):
        raise ValueError(f"validation_fraction={validation_fraction} leaves an empty split of {n} samples")
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


@cache
def weighted_nll(log_prob_fn):
    """The weighted negative log-likelihood loss of a pure log-density function.

    ``log_prob_fn(variables, consts, x) -> (b,)``; the loss is
    ``-mean(w * log q(x))``. Cached, so one log-density function gives one
    loss function and :func:`train` reuses its traced graph.
    """

    def loss(variables, consts, x, w):
        return -tf.reduce_mean(w * log_prob_fn(variables, consts, x))

    return loss


@cache
def forward_kl(log_prob_fn):
    """``KL(p‖q) ≈ mean(w (log p - log q))`` from samples of ``p`` with their log-densities.

    The last column of ``x`` holds ``log p`` (up to a constant) at the row;
    the gradient is the negative log-likelihood's, the value a KL estimate
    (exact when ``log p`` is normalised).
    """

    def loss(variables, consts, x, w):
        lq = log_prob_fn(variables, consts, x[:, :-1])
        return tf.reduce_mean(w * (x[:, -1] - lq))

    return loss


@cache
def kl_logvar(log_prob_fn, weight):
    """Forward KL plus ``weight`` times the weighted variance of ``log q - log p`` over the batch.

    The variance (the log-variance divergence) is zero only when ``q ∝ p`` on
    the samples, so an unknown constant in ``log p`` (last column of ``x``)
    does not change the gradient; it uses every sample's target density, not
    only where the sample lies, and fits the density's shape far closer than
    the likelihood alone. The KL term keeps ``q`` normalised on the samples:
    without it nothing stops mass from moving to where there are none.
    """

    def loss(variables, consts, x, w):
        lp = x[:, -1]
        lq = log_prob_fn(variables, consts, x[:, :-1])
        wn = w / tf.reduce_sum(w)
        d = lq - lp
        mean = tf.reduce_sum(wn * d)
        return tf.reduce_mean(w * (lp - lq)) + weight * tf.reduce_sum(wn * (d - mean) ** 2)

    return loss


@cache
def jeffreys(log_prob_fn):
    """The Jeffreys divergence ``KL(p‖q) + KL(q‖p)`` from samples of ``p`` with their log-densities.

    ``KL(q‖p) = E_p[(q/p) (log q - log p)]`` is estimated with self-normalised
    importance weights ``∝ w q/p`` over the batch (Yamauchi et al. 2023,
    Eq. 15): an unknown constant in ``log p`` (last column of ``x``) then
    cancels between the two terms, so the value is the divergence itself.
    """

    def loss(variables, consts, x, w):
        lp = x[:, -1]
        lq = log_prob_fn(variables, consts, x[:, :-1])
        r = tf.nn.softmax(tf.math.log(w) + lq - lp)
        return tf.reduce_mean(w * (lp - lq)) + tf.reduce_sum(r * (lq - lp))

    return loss


def reverse_kl(log_prob_fn, forward_fn, log_target_fn):
    """``KL(q‖p) - log Z`` by the flow's own draws (variational fitting, no samples of ``p``).

    The rows ``x`` are draws ``ε`` of the standard normal base; the flow maps
    them to ``z = forward(ε)`` and the loss is ``mean(w (log q(z) - log p̃(z)))``
    with ``log p̃(z)`` the unnormalised target in z-space, ``log_target_fn(z)``.
    Its minimum, ``-log Z``, is reached when ``q = p``. The gradient flows
    through the sampling map (the reparametrisation trick).
    """

    def loss(variables, consts, x, w):
        z = forward_fn(variables, consts, x)
        return tf.reduce_mean(w * (log_prob_fn(variables, consts, z) - log_target_fn(z)))

    return loss


def train(
    loss_fn,
    variables,
    x,
    weights,
    *,
    consts=(),
    val_loss_fn=None,
    epochs=1000,
    batch_size=512,
    learning_rate=1e-3,
    patience=50,
    validation_fraction=0.2,
    lr_decay_patience=None,
    lr_decay_factor=0.5,
    min_learning_rate=1e-6,
    clip_norm=10.0,
    ema_decay=0.0,
    seed=0,
    progress=True,
    dtype=tf.float32,
    history=None,
    jit=True,
):
    """Fit ``variables`` by minimising ``loss_fn`` over minibatches.

    Parameters
    ----------
    loss_fn : callable ``(variables, consts, x, w) -> scalar``
        Pure TensorFlow function of the variables, fixed tensors ``consts``, a
        batch of rows ``x`` (b, d) and their weights ``w`` (b,), normalised so
        that the weights of each split average 1. For a weighted negative
        log-likelihood it is ``-mean(w * log q(x))`` (:func:`weighted_nll`).
        The compiled epoch is cached per ``loss_fn`` (and batch size, clip
        norm, dtype), so passing the same function object for every model of
        one architecture compiles once per process.
    variables : list of tf.Variable
        What is trained.
    x : ndarray, shape (n, d)
    weights : ndarray, shape (n,)
        Non-negative sample weights.
    consts : tuple of tf.Tensor
        Passed to ``loss_fn`` unchanged.
    val_loss_fn : callable, optional
        The held-out score that decides early stopping, the learning-rate
        decay and which epoch is kept (same signature; default ``loss_fn``).
        A loss with a term that is quadratic in each row's misfit (the
        log-variance of :func:`kl_logvar`) lets one held-out row decide it;
        the forward KL (the likelihood) is linear in it.
    epochs : int
        Most passes over the training data.
    batch_size : int
    learning_rate : float
        Initial Adam learning rate.
    patience : int
        Stop after this many epochs without a lower validation loss; the
        weights of the best epoch are restored.
    validation_fraction : float
        Fraction of the rows held out (seeded). With 0, the training loss
        decides early stopping (of the averaged weights when ``ema_decay``
        is set, or ``val_loss_fn`` when given, at the cost of one more pass
        over the rows per epoch).
    lr_decay_patience : int, optional
        Halve (``lr_decay_factor``) the learning rate after this many epochs
        without improvement; default ``max(1, patience // 5)``.
    min_learning_rate : float
        The decay stops here.
    clip_norm : float
        Global gradient-norm clip.
    ema_decay : float
        Keep an exponential moving average of the weights, updated after
        every step with this decay (0 turns it off; 0.99 averages over about
        the last 100 steps). The validation loss, early stopping and the
        returned weights are then those of the average, which smooths out the
        minibatch noise of the last steps (Polyak averaging).
    seed : int
        Seeds the split and the shuffling.
    progress : bool
        Show a tqdm bar (a widget in notebooks) with loss and val_loss.
    history : History, optional
        Continue this history (a second ``fit``) instead of starting a new one.
    jit : bool
        XLA-compile the step. Off for losses XLA cannot differentiate (the
        MAF's sampling loop, in :func:`reverse_kl`).

    Returns
    -------
    History

    Raises
    ------
    TrainingDivergedError
        If a loss becomes NaN or infinite; the best weights are restored first.
    """
    from tqdm.auto import tqdm

    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("patience", patience)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
    epochs, batch_size, patience = int(epochs), int(batch_size), int(patience)
    if lr_decay_patience is None:
        lr_decay_patience = max(1, patience // 5)

    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n, d), got {x.shape}")
    weights = np.asarray(weights, dtype=np.float64)
    i_train, i_val = split_indices(len(x), validation_fraction, seed)
    x_train, w_train = x[i_train], weights[i_train]
    x_val, w_val = x[i_val], weights[i_val]
    if not w_train.sum() > 0:
        raise ValueError("the training split has zero total weight; lower validation_fraction or change the seed")
    if len(i_val) and not w_val.sum() > 0:
        raise ValueError("the validation split has zero total weight; raise validation_fraction or change the seed")
    has_val = len(i_val) > 0
    if not has_val:
        x_val, w_val = x_train[:0], w_train[:0]
    # weights average 1 over each split, so a minibatch mean is an unbiased
    # estimate of the weighted mean loss
    data = (
        tf.constant(x_train, dtype),
        tf.constant(w_train / w_train.mean(), dtype),
        tf.constant(x_val, dtype),
        tf.constant(w_val / w_val.mean() if has_val else w_val, dtype),
    )
    batch_size = min(batch_size, len(x_train))

    t0 = time.perf_counter()
    # the weights travel through training as one flat vector (and Adam's
    # moments as two more): a step then passes 5 tensors instead of 3 per
    # weight array (about 20% less time per epoch for the default MAF)
    shapes = tuple(tuple(v.shape.as_list()) for v in variables)
    params = tf.Variable(_flatten(variables), trainable=False)
    averaged = tf.Variable(params) if ema_decay else params
    lr_var = tf.Variable(learning_rate, dtype=dtype, trainable=False)
    adam = _Adam(params)
    consts = tuple(consts)
    state = (params, averaged, adam.m, adam.v, adam.t, lr_var)
    settings = (loss_fn, val_loss_fn or loss_fn, shapes, batch_size, float(clip_norm), has_val, dtype, float(ema_decay))
    run_epoch = _compiled_epoch(*settings, bool(jit), x.shape[1], state, consts)

    history = History() if history is None else history
    start_epoch = history.epochs
    rng = np.random.default_rng([seed, start_epoch])
    best = averaged.numpy()
    best_loss = np.inf
    since_best = 0
    since_decay = 0
    bar = tqdm(range(epochs), disable=not progress, desc="fit", unit="epoch", leave=True)
    try:
        for epoch in bar:
            # drop the last partial batch, but draw a new permutation each epoch
            perm = tf.constant(rng.permutation(len(x_train)), tf.int32)
            try:
                out = run_epoch(*state, consts, *data, perm)
            except _xla.ERRORS as exc:
                if epoch > 0 or not _xla.is_compile_failure(exc):
                    raise
                # this TensorFlow build cannot XLA-compile the step: run it as a plain graph
                warnings.warn(f"XLA compilation failed ({type(exc).__name__}); training without it", stacklevel=3)
                params.assign(best)
                averaged.assign(best)
                run_epoch = _compiled_epoch(*settings, False, x.shape[1], state, consts)
                out = run_epoch(*state, consts, *data, perm)
            loss, val = (float(v) for v in out)
            history.loss.append(loss)
            history.val_loss.append(val)
            history.learning_rate.append(float(lr_var.numpy()))
            if not (np.isfinite(loss) and np.isfinite(val)):
                _assign(variables, best, shapes)
                raise TrainingDivergedError(
                    f"the loss became {loss if not np.isfinite(loss) else val} at epoch {start_epoch + epoch}; "
                    f"the weights of epoch {history.best_epoch} (val_loss {history.best_val_loss:.5g}) were "
                    "restored. Lower learning_rate or clip_norm, or check the samples.",
                    history,
                )
            if val < best_loss:
                best_loss, since_best, since_decay = val, 0, 0
                best = averaged.numpy()
                history.best_epoch, history.best_val_loss = start_epoch + epoch, val
            else:
                since_best += 1
                since_decay += 1
            if progress:
                bar.set_postfix(loss=f"{loss:.4f}", val_loss=f"{val:.4f}", best=f"{best_loss:.4f}", refresh=False)
            if since_best >= patience:
                history.stopped_early = True
                break
            if since_decay >= lr_decay_patience and lr_var.numpy() > min_learning_rate:
                lr_var.assign(max(float(lr_var.numpy()) * lr_decay_factor, min_learning_rate))
                since_decay = 0
    finally:
        bar.close()
        history.wall_time += time.perf_counter() - t0
    _assign(variables, best, shapes)
    return history


def _flatten(tensors):
    return tf.concat([tf.reshape(t, [-1]) for t in tensors], axis=0)


def _unflatten(flat, shapes):
    sizes = [int(np.prod(s)) for s in shapes]
    return [tf.reshape(p, s) for p, s in zip(tf.split(flat, sizes), shapes)]


def _assign(variables, flat, shapes):
    for v, a in zip(variables, _unflatten(tf.constant(flat), shapes)):
        v.assign(a)


class _Adam:
    """Adam's moments and step count for one flat parameter vector (Kingma & Ba; Keras' epsilon)."""

    beta1, beta2, epsilon = 0.9, 0.999, 1e-7

    def __init__(self, params):
        self.m = tf.Variable(tf.zeros_like(params), trainable=False)
        self.v = tf.Variable(tf.zeros_like(params), trainable=False)
        self.t = tf.Variable(0.0, dtype=params.dtype, trainable=False)

    @classmethod
    def apply(cls, grad, params, m, v, t, lr):
        """Update ``params`` in place; returns the new value."""
        t_new = t.assign_add(1.0)
        scale = lr * tf.sqrt(1.0 - cls.beta2**t_new) / (1.0 - cls.beta1**t_new)
        m_new = m.assign(cls.beta1 * m + (1.0 - cls.beta1) * grad)
        v_new = v.assign(cls.beta2 * v + (1.0 - cls.beta2) * tf.square(grad))
        return params.assign_sub(scale * m_new / (tf.sqrt(v_new) + cls.epsilon))


_TRACES = 0


def trace_count():
    """How many epoch graphs this process has traced (each costs about a second)."""
    return _TRACES


def _compiled_epoch(
    loss_fn, val_loss_fn, shapes, batch_size, clip_norm, has_val, dtype, ema_decay, jit, d, state, consts
):
    """The concrete epoch function for these settings, traced at most once per process.

    The state is traced by shape and dtype, and the data by ``[None, d]``, so
    any model of the same architecture on any data reuses the graph.
    """
    fn = _epoch_function(loss_fn, val_loss_fn, shapes, batch_size, clip_norm, has_val, dtype, ema_decay, jit)
    data = (
        tf.TensorSpec([None, d], dtype),
        tf.TensorSpec([None], dtype),
        tf.TensorSpec([None, d], dtype),
        tf.TensorSpec([None], dtype),
        tf.TensorSpec([None], tf.int32),
    )
    return fn.get_concrete_function(*state, consts, *data)


@lru_cache(maxsize=64)
def _epoch_function(loss_fn, val_loss_fn, shapes, batch_size, clip_norm, has_val, dtype, ema_decay, jit):
    # the step is XLA-compiled (about 25% faster per epoch on CPU); autograph
    # stays off: the loop is an explicit tf.while_loop
    @tf.function(autograph=False, jit_compile=jit)
    def step(params, averaged, m, v, t, lr, consts, xb, wb):
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss = loss_fn(_unflatten(params, shapes), consts, xb, wb)
        grad = tape.gradient(loss, params)
        # the global norm of all weights' gradients is this vector's norm
        grad = tf.clip_by_norm(grad, clip_norm)
        new = _Adam.apply(grad, params, m, v, t, lr)
        ops = [new]
        if ema_decay:
            ops.append(averaged.assign(ema_decay * averaged + (1.0 - ema_decay) * new))
        with tf.control_dependencies(ops):
            return tf.identity(loss)

    @tf.function(autograph=False)
    def run_epoch(params, averaged, m, v, t, lr, consts, x_train, w_train, x_val, w_val, perm):
        """One pass over the shuffled training rows, then the validation loss."""
        global _TRACES
        _TRACES += 1  # runs only while tracing
        n_batches = tf.shape(perm)[0] // batch_size

        def body(b, total):
            idx = perm[b * batch_size : (b + 1) * batch_size]
            loss = step(params, averaged, m, v, t, lr, consts, tf.gather(x_train, idx), tf.gather(w_train, idx))
            return b + 1, total + loss

        _, total = tf.while_loop(lambda b, _: b < n_batches, body, (tf.constant(0), tf.constant(0.0, dtype)))
        mean = total / tf.cast(n_batches, dtype)
        if has_val:
            val = val_loss_fn(_unflatten(averaged, shapes), consts, x_val, w_val)
        elif ema_decay or val_loss_fn is not loss_fn:
            # no held-out rows: judge the (averaged) weights on the training rows
            val = val_loss_fn(_unflatten(averaged, shapes), consts, x_train, w_train)
        else:
            val = mean
        return mean, val

    return run_epoch
