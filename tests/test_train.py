"""The shared training loop: early stopping, divergence, progress, compilation."""

import importlib

import numpy as np
import pytest
import tensorflow as tf

import margflow as mf
from margflow.flows.train import History, TrainingDivergedError, split_indices, train


def _overfitting_flow():
    """A flow with far more capacity than data: the validation loss turns up."""
    x = np.random.default_rng(0).normal(size=(60, 2))
    return mf.MAF(x, n_layers=4, hidden=(128, 128), seed=1)


def test_early_stopping_restores_the_best_epoch():
    flow = _overfitting_flow()
    hist = flow.fit(epochs=400, batch_size=16, learning_rate=5e-3, patience=25, progress=False)
    assert hist.stopped_early
    assert hist.best_epoch == int(np.argmin(hist.val_loss))
    assert hist.best_epoch < hist.epochs - 1
    assert hist.val_loss[-1] > hist.best_val_loss  # the last epoch is not the best
    # the weights in the model are the best epoch's: recompute its validation loss
    z, w = flow._training_data()
    _, i_val = split_indices(len(z), 0.2, flow.seed)
    lp = flow._flow.log_prob(tf.constant(z[i_val], tf.float32)).numpy()
    wv = w[i_val] / w[i_val].mean()
    assert -np.mean(wv * lp) == pytest.approx(hist.best_val_loss, rel=1e-5)


def test_nan_loss_raises_and_keeps_best_weights():
    v = tf.Variable(1.0)

    def loss_fn(variables, consts, x, w):  # log(v): the gradient drives v through zero, then NaN
        return tf.math.log(variables[0]) + 0.0 * tf.reduce_sum(x)

    with pytest.raises(TrainingDivergedError, match="restored") as err:
        train(
            loss_fn, [v], np.zeros((100, 1)), np.ones(100), epochs=100, learning_rate=0.3, clip_norm=1e6, progress=False
        )
    hist = err.value.history
    assert np.isnan(hist.loss[-1]) or np.isnan(hist.val_loss[-1])
    assert hist.best_epoch >= 0
    assert v.numpy() > 0 and np.isfinite(np.log(v.numpy()))


def _quadratic(variables, consts, x, w):
    _TRACES.append(1)  # python runs only while tracing
    return tf.reduce_mean(w * tf.reduce_sum((x - variables[0]) ** 2, axis=1))


_TRACES = []


def test_compiled_once_for_all_epochs_and_all_models():
    x = np.random.default_rng(0).normal(size=(1000, 2)) + 3
    kwargs = {"epochs": 20, "batch_size": 100, "learning_rate": 0.1, "patience": 100, "progress": False}
    _TRACES.clear()
    v = tf.Variable([0.0, 0.0])
    hist = train(_quadratic, [v], x, np.ones(1000), **kwargs)
    assert hist.epochs == 20
    assert len(_TRACES) == 2  # one trace: the training step and the validation loss
    np.testing.assert_allclose(v.numpy(), x.mean(0), atol=0.1)
    # a second model of the same shape, on data of another length: no new trace
    v2 = tf.Variable([1.0, 1.0])
    train(_quadratic, [v2], x[:700] - 1, np.ones(700), **kwargs)
    assert len(_TRACES) == 2
    np.testing.assert_allclose(v2.numpy(), x[:700].mean(0) - 1, atol=0.1)


def test_second_maf_of_an_architecture_compiles_nothing(unbounded_data):
    x, _ = unbounded_data
    train_module = importlib.import_module("margflow.flows.train")
    mf.MAF(x, n_layers=2, hidden=(12, 12), seed=0).fit(epochs=2, patience=5, progress=False)
    before = train_module.trace_count()
    mf.MAF(x[:2000], n_layers=2, hidden=(12, 12), seed=1).fit(epochs=2, patience=5, progress=False)
    assert train_module.trace_count() == before
    mf.MAF(x, n_layers=2, hidden=(13, 12), seed=1).fit(epochs=2, patience=5, progress=False)
    assert train_module.trace_count() == before + 1  # another architecture is traced once


def test_weights_are_honoured_by_the_loss():
    """Weighted mean of a quadratic loss is minimised at the weighted mean."""
    v = tf.Variable([0.0])
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 1))
    w = np.exp(2 * x[:, 0])  # tilts N(0,1) to N(2,1)
    train(
        lambda var, c, xb, wb: tf.reduce_mean(wb * (xb[:, 0] - var[0][0]) ** 2),
        [v],
        x,
        w,
        epochs=200,
        batch_size=4000,
        learning_rate=0.05,
        patience=50,
        validation_fraction=0,
        progress=False,
    )
    np.testing.assert_allclose(v.numpy()[0], np.average(x[:, 0], weights=w), atol=0.02)


def test_progress_bar(capsys):
    v = tf.Variable([0.0])
    args = (lambda var, c, x, w: tf.reduce_mean(w * (x[:, 0] - var[0][0]) ** 2), [v], np.ones((50, 1)), np.ones(50))
    train(*args, epochs=3, progress=False)
    assert capsys.readouterr().err == ""
    train(*args, epochs=3, progress=True)
    err = capsys.readouterr().err
    assert "fit" in err and "val_loss" in err


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"batch_size": 2.5}, "batch_size must be a positive integer"),
        ({"learning_rate": -1}, "learning_rate must be positive"),
        ({"validation_fraction": 1.0}, "validation_fraction must be in"),
    ],
)
def test_bad_arguments(kwargs, message):
    v = tf.Variable([0.0])
    with pytest.raises(ValueError, match=message):
        train(lambda var, c, x, w: tf.reduce_sum(var[0]), [v], np.ones((50, 1)), np.ones(50), progress=False, **kwargs)


def test_split_is_seeded_and_disjoint():
    a = split_indices(100, 0.2, 3)
    b = split_indices(100, 0.2, 3)
    np.testing.assert_array_equal(a[0], b[0])
    assert len(a[1]) == 20 and not set(a[0]) & set(a[1])
    assert not np.array_equal(a[1], split_indices(100, 0.2, 4)[1])


def test_history_round_trip():
    h = History(loss=[1.0, 0.5], val_loss=[1.1, 0.6], learning_rate=[1e-3, 1e-3], best_epoch=1, best_val_loss=0.6)
    assert History.from_dict(h.to_dict()) == h and h.epochs == 2


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_moving_average_of_the_weights_is_what_is_kept(ema_decay):
    """One Adam step moves p from 0 by the learning rate; the kept weights are the average.

    Adam's first step is ``lr * g / (|g| + eps)``, so with one full batch the
    raw weight is ``lr`` (to 1e-7 relative) and the average ``(1 - decay) * lr``.
    """
    p = tf.Variable([0.0])
    x, lr = np.ones((50, 1)), 0.1
    hist = train(
        _quadratic,
        [p],
        x,
        np.ones(50),
        epochs=1,
        batch_size=50,
        learning_rate=lr,
        validation_fraction=0.0,
        ema_decay=ema_decay,
        progress=False,
    )
    expected = (1 - ema_decay) * lr
    assert p.numpy()[0] == pytest.approx(expected, rel=1e-5)
    # with no held-out rows the averaged weights are judged on the training rows
    assert hist.best_val_loss == pytest.approx((1 - expected) ** 2 if ema_decay else 1.0, rel=1e-5)


def test_kl_logvar_stops_on_the_held_out_likelihood():
    """With loss="kl_logvar" the kept epoch is the one of lowest held-out forward KL: the
    log-variance term, quadratic in each row's misfit, would let one held-out row decide."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 2))
    log_p = -0.5 * np.sum(x**2, axis=1)
    flow = mf.MAF(x, n_layers=2, hidden=(16, 16), seed=2)
    hist = flow.fit(epochs=40, patience=40, progress=False, loss="kl_logvar", log_density=log_p)
    z, w = flow._training_data(flow._log_density)
    _, i_val = split_indices(len(z), 0.2, flow.seed)
    lq = flow._flow.log_prob(tf.constant(z[i_val, :-1], tf.float32)).numpy()
    wv = w[i_val] / w[i_val].mean()
    kl = np.mean(wv * (z[i_val, -1] - lq))  # the forward KL of the kept weights, no variance term
    assert kl == pytest.approx(hist.best_val_loss, rel=1e-4, abs=1e-5)
    assert hist.best_epoch == int(np.argmin(hist.val_loss))
