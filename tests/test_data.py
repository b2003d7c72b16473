"""Data intake: every input form, and a clear error for every bad input."""

import warnings

import numpy as np
import pandas as pd
import pytest

from margflow.data import load_samples, min_samples


@pytest.fixture
def x():
    return np.random.default_rng(0).normal(size=(200, 3))


def test_numpy_defaults(x):
    data = load_samples(x)
    assert data.params == ["theta0", "theta1", "theta2"]
    assert data.theta.dtype == np.float64 and data.theta.shape == (200, 3)
    np.testing.assert_array_equal(data.weights, np.ones(200))
    assert data.logZ is None and np.isinf(data.bounds).all()


def test_pandas_selects_by_name(x):
    df = pd.DataFrame(x, columns=["a", "b", "c"])
    data = load_samples(df, params=["c", "a"], weights=np.arange(200) + 1.0)
    np.testing.assert_array_equal(data.theta, x[:, [2, 0]])
    assert data.params == ["c", "a"]


def test_anesthetic_nested_samples_give_weights_and_logz():
    from margflow.examples import load_example

    samples, bounds = load_example()
    data = load_samples(samples, params=["sigma8", "Omega_m"], bounds=bounds)
    np.testing.assert_allclose(data.weights, samples.get_weights())
    assert data.logZ == pytest.approx(samples.logZ())
    np.testing.assert_array_equal(data.theta[:, 0], samples["sigma8"].to_numpy())
    assert data.bounds.tolist() == [list(bounds["sigma8"]), list(bounds["Omega_m"])]
    # default parameters: every parameter column, bookkeeping columns left out
    assert load_samples(samples).params == ["Omega_m", "sigma8", "A_IA", "b1", "m_cal"]
    with pytest.raises(ValueError, match="weights come from the anesthetic samples"):
        load_samples(samples, params=["sigma8"], weights=np.ones(len(samples)))


def test_anesthetic_mcmc_samples(x):
    from anesthetic import MCMCSamples

    w = np.random.default_rng(1).uniform(size=200)
    m = MCMCSamples(data=x, columns=["a", "b", "c"], weights=w)
    data = load_samples(m, params=["b"])
    np.testing.assert_allclose(data.weights, w)
    assert data.logZ is None


def test_non_finite_rows_are_dropped_with_a_count(x):
    x = x.copy()
    x[[3, 7], 1] = np.nan
    x[11, 0] = np.inf
    with pytest.warns(UserWarning, match="dropped 3 of 200 samples"):
        data = load_samples(x, weights=np.arange(200.0) + 1)
    assert data.theta.shape == (197, 3)
    assert 4.0 not in data.weights and 8.0 not in data.weights and 12.0 not in data.weights


def test_no_warning_when_nothing_dropped(x):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_samples(x)


@pytest.mark.parametrize(
    "weights, message",
    [
        (-np.ones(200), "200 negative values"),
        (np.r_[np.ones(199), np.nan], "1 NaN values"),
        (np.r_[np.ones(199), np.inf], "1 infinite values"),
        (np.zeros(200), "all weights are zero"),
        (np.ones(150), "150 weights for 200 samples"),
    ],
)
def test_bad_weights(x, weights, message):
    with pytest.raises(ValueError, match=message):
        load_samples(x, weights=weights)


def test_unknown_parameter_names(x):
    df = pd.DataFrame(x, columns=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"unknown parameters \['d'\]; the samples have columns \['a', 'b', 'c'\]"):
        load_samples(df, params=["a", "d"])
    with pytest.raises(ValueError, match="2 parameter names given for 3 columns"):
        load_samples(x, params=["a", "b"])


def test_too_few_samples():
    need = min_samples(3)
    with pytest.raises(
        ValueError, match=f"{need - 1} samples with positive weight for 3 parameters; need at least {need}"
    ):
        load_samples(np.random.default_rng(0).normal(size=(need - 1, 3)))
    # zero-weight rows do not count
    w = np.r_[np.ones(need - 1), np.zeros(50)]
    with pytest.raises(ValueError, match="need at least"):
        load_samples(np.random.default_rng(0).normal(size=(need + 49, 3)), weights=w)


def test_constant_column(x):
    x = x.copy()
    x[:, 1] = 0.7
    with pytest.raises(ValueError, match=r"parameters \['theta1'\] are constant"):
        load_samples(x)


def test_samples_outside_bounds_name_parameter_and_count(x):
    bounds = {"b": (-1.0, 1.0)}
    df = pd.DataFrame(x, columns=["a", "b", "c"])
    n_out = int((np.abs(x[:, 1]) > 1).sum())
    assert n_out > 0
    with pytest.raises(ValueError, match=rf"b: {n_out} outside \[-1, 1\]"):
        load_samples(df, bounds=bounds)


def test_samples_on_the_bounds_are_inside(x):
    x = x.copy()
    x[0, 0], x[1, 0] = -5.0, 5.0
    data = load_samples(x, bounds=[[-5, 5], [None, None], [None, None]])
    assert data.theta.shape[0] == 200


def test_repeated_and_non_2d():
    with pytest.raises(ValueError, match="repeat"):
        load_samples(np.random.default_rng(0).normal(size=(100, 2)), params=["a", "a"])
    with pytest.raises(ValueError, match="2-D"):
        load_samples(np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="numeric"):
        load_samples([["a", "b"]])
