"""The one training loop of margflow.

Every trainable estimator and every loss goes through :func:`train`: shuffled
minibatches, Adam, a learning rate that halves when the validation loss stalls,
gradient clipping, early stopping that restores the best weights by value, a
clear error when the loss stops being finite, and a tqdm progress bar.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import tensorflow as tf

__all__ = ["History", "TrainingDivergedError", "train", "split_indices"]


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


def train(
    loss_fn,
    variables,
    x,
    weights,
    *,
    epochs=1000,
    batch_size=512,
    learning_rate=1e-3,
    patience=50,
    validation_fraction=0.2,
    lr_decay_patience=None,
    lr_decay_factor=0.5,
    min_learning_rate=1e-6,
    clip_norm=10.0,
    seed=0,
    progress=True,
    dtype=tf.float32,
    history=None,
):
    """Fit ``variables`` by minimising ``loss_fn`` over minibatches.

    Parameters
    ----------
    loss_fn : callable ``(x, w) -> scalar``
        TensorFlow function of a batch of rows ``x`` (b, d) and their weights
        ``w`` (b,), normalised so that the training weights average 1. For a
        weighted negative log-likelihood it is ``-mean(w * log q(x))``.
    variables : list of tf.Variable
        What is trained.
    x : ndarray, shape (n, d)
    weights : ndarray, shape (n,)
        Non-negative sample weights.
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
        decides early stopping.
    lr_decay_patience : int, optional
        Halve (``lr_decay_factor``) the learning rate after this many epochs
        without improvement; default ``max(1, patience // 5)``.
    min_learning_rate : float
        The decay stops here.
    clip_norm : float
        Global gradient-norm clip.
    seed : int
        Seeds the split and the shuffling.
    progress : bool
        Show a tqdm bar (a widget in notebooks) with loss and val_loss.
    history : History, optional
        Continue this history (a second ``fit``) instead of starting a new one.

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
    weights = np.asarray(weights, dtype=np.float64)
    i_train, i_val = split_indices(len(x), validation_fraction, seed)
    x_train, w_train = x[i_train], weights[i_train]
    x_val, w_val = x[i_val], weights[i_val]
    if not w_train.sum() > 0:
        raise ValueError("the training split has zero total weight; lower validation_fraction or change the seed")
    if len(i_val) and not w_val.sum() > 0:
        raise ValueError("the validation split has zero total weight; raise validation_fraction or change the seed")
    # weights average 1 over each split, so a minibatch mean is an unbiased
    # estimate of the weighted mean loss
    w_train = w_train / w_train.mean()
    x_train_t = tf.constant(x_train, dtype)
    w_train_t = tf.constant(w_train, dtype)
    if len(i_val):
        x_val_t = tf.constant(x_val, dtype)
        w_val_t = tf.constant(w_val / w_val.mean(), dtype)
    # validation rows go through the network in one batch

    lr_var = tf.Variable(learning_rate, dtype=tf.float32, trainable=False)
    import tf_keras

    optimizer = tf_keras.optimizers.Adam(learning_rate=lr_var)
    # create Adam's slots now: variables created inside the first call would
    # make tf.function trace the whole epoch twice
    optimizer.build(variables)
    batch_size = min(batch_size, len(x_train))

    has_val = len(i_val) > 0
    if not has_val:
        x_val_t, w_val_t = x_train_t[:0], w_train_t[:0]

    # autograph stays off: the loop is an explicit tf.while_loop, and tracing
    # TFP code through autograph is slow
    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)], autograph=False)
    def run_epoch(perm):
        """One pass over the shuffled training rows, then the validation loss."""
        n_batches = tf.shape(perm)[0] // batch_size

        def body(b, total):
            idx = perm[b * batch_size : (b + 1) * batch_size]
            xb, wb = tf.gather(x_train_t, idx), tf.gather(w_train_t, idx)
            with tf.GradientTape() as tape:
                loss = loss_fn(xb, wb)
            grads = tape.gradient(loss, variables)
            grads, _ = tf.clip_by_global_norm(grads, clip_norm)
            with tf.control_dependencies([optimizer.apply_gradients(zip(grads, variables))]):
                return b + 1, total + loss

        _, total = tf.while_loop(lambda b, _: b < n_batches, body, (tf.constant(0), tf.constant(0.0, dtype)))
        mean = total / tf.cast(n_batches, dtype)
        val = loss_fn(x_val_t, w_val_t) if has_val else mean
        return mean, val

    history = History() if history is None else history
    start_epoch = history.epochs
    rng = np.random.default_rng([seed, start_epoch])
    best = [v.numpy() for v in variables]
    best_loss = np.inf
    since_best = 0
    since_decay = 0
    t0 = time.perf_counter()
    bar = tqdm(range(epochs), disable=not progress, desc="fit", unit="epoch", leave=True)
    try:
        for epoch in bar:
            # drop the last partial batch, but draw a new permutation each epoch
            loss, val = (float(v) for v in run_epoch(tf.constant(rng.permutation(len(x_train)), tf.int32)))
            history.loss.append(loss)
            history.val_loss.append(val)
            history.learning_rate.append(float(lr_var.numpy()))
            if not (np.isfinite(loss) and np.isfinite(val)):
                for v, b in zip(variables, best):
                    v.assign(b)
                raise TrainingDivergedError(
                    f"the loss became {loss if not np.isfinite(loss) else val} at epoch {start_epoch + epoch}; "
                    f"the weights of epoch {history.best_epoch} (val_loss {history.best_val_loss:.5g}) were "
                    "restored. Lower learning_rate or clip_norm, or check the samples.",
                    history,
                )
            if val < best_loss:
                best_loss, since_best, since_decay = val, 0, 0
                best = [v.numpy() for v in variables]
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
    for v, b in zip(variables, best):
        v.assign(b)
    return history
