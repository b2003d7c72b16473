"""Ensemble: the average of several fits of one flow, its training, files and bad input.

The shared properties run over the ensemble case of conftest.py in
test_properties.py (normalisation, bounds, transform, log-det per member,
save/load, bootstrap).
"""

import json

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import margflow as mf
from margflow.io import _build, _pack

SMALL = {"n_layers": 2, "hidden": (16, 16)}
FIT = {"epochs": 30, "patience": 10, "progress": False}
COV = np.array([[1.0, 0.8], [0.8, 1.0]])


def _gauss(n=2000, seed=0):
    return np.random.default_rng(seed).multivariate_normal([0.0, 0.0], COV, n)


@pytest.fixture(scope="module")
def ensemble():
    ens = mf.Ensemble(_gauss(), estimator=mf.MAF, n_members=3, seed=5, **SMALL)
    ens.fit(**FIT)
    return ens


def test_log_prob_is_the_average_of_the_members(ensemble):
    x = ensemble.sample(300, seed=1)
    members = np.array([m.log_prob(x) for m in ensemble.members])
    np.testing.assert_allclose(ensemble.log_prob(x), logsumexp(members, axis=0) - np.log(3), rtol=1e-12)
    # member k has seed + k and its own fit: the members differ
    assert [m.seed for m in ensemble.members] == [5, 6, 7]
    assert np.abs(members[0] - members[1]).max() > 1e-3
    assert all(isinstance(m, mf.MAF) and m.history is not None for m in ensemble.members)
    assert ensemble.history == [m.history for m in ensemble.members]


def test_same_seed_same_ensemble(ensemble):
    other = mf.Ensemble(_gauss(), estimator="MAF", n_members=3, seed=5, **SMALL)
    other.fit(**FIT)
    x = ensemble.sample(100, seed=2)
    np.testing.assert_array_equal(other.log_prob(x), ensemble.log_prob(x))
    np.testing.assert_array_equal(other.sample(50, seed=3), ensemble.sample(50, seed=3))


def test_averaging_removes_fit_to_fit_scatter(ensemble):
    """KL(p‖ensemble) is below the members' mean KL by more than its Monte Carlo error.

    Pointwise log(mean q_k) ≥ mean log q_k (Jensen); the gain is the spread of
    the members' log-densities, which brief fits on 2,000 samples leave.
    """
    p = multivariate_normal([0.0, 0.0], COV)
    xt = p.rvs(20_000, random_state=np.random.default_rng(9))
    members = np.array([m.log_prob(xt) for m in ensemble.members])
    gain = members.mean(axis=0) - ensemble.log_prob(xt)  # mean KL of the members minus the ensemble's, per draw
    assert np.all(gain <= 1e-12)
    assert -gain.mean() > 3 * gain.std() / np.sqrt(len(gain)), (gain.mean(), gain.std())
    kl_members = (p.logpdf(xt) - members).mean(axis=1)
    assert (p.logpdf(xt) - ensemble.log_prob(xt)).mean() < kl_members.mean()


def test_fit_passes_the_loss_and_log_density_by_input_row():
    """A log-density per input row follows the rows the intake kept, for every member."""
    x = _gauss(800, seed=1)
    p = multivariate_normal([0.0, 0.0], COV)
    logp = p.logpdf(x)
    x[7, 1] = np.nan  # dropped by the intake, with a warning
    with pytest.warns(UserWarning, match="1 "):
        ens = mf.Ensemble(x, estimator="RealNVP", n_members=2, **SMALL)
    ens.fit(loss="kl_logvar", log_density=logp, epochs=5, progress=False)
    kept = np.ones(len(x), bool)
    kept[7] = False
    for m in ens.members:
        assert m.fit_config["loss"] == "kl_logvar"
        np.testing.assert_array_equal(m._log_density, logp[kept])
    assert ens._fit_kwargs()["loss"] == "kl_logvar"


def test_transform_picks_the_member_by_the_first_coordinate(ensemble):
    u = np.random.default_rng(4).uniform(size=(200, 2))
    x = ensemble.transform(u)
    for k, member in enumerate(ensemble.members):
        rows = (u[:, 0] >= k / 3) & (u[:, 0] < (k + 1) / 3)
        v = u[rows].copy()
        v[:, 0] = v[:, 0] * 3 - k
        np.testing.assert_allclose(x[rows], member.transform(v), rtol=1e-12, atol=1e-12)


def test_save_load_keeps_members_and_settings(ensemble, tmp_path):
    ensemble.save(tmp_path / "ens.mflow")
    other = mf.load(tmp_path / "ens.mflow")
    assert isinstance(other, mf.Ensemble) and other.estimator is mf.MAF and other.n_members == 3
    assert other._settings() == ensemble._settings()
    assert [m.seed for m in other.members] == [5, 6, 7]
    x = ensemble.sample(100, seed=6)
    np.testing.assert_array_equal(other.log_prob(x), ensemble.log_prob(x))
    assert "Ensemble" in repr(other) and "n_members=3" in repr(other)


def test_piecewise_files_without_member_classes_still_load():
    """Piecewise files written before members recorded their class hold MAFs."""
    x = np.concatenate([_gauss(600, 2) - 4, _gauss(600, 3) + 4])
    pw = mf.PiecewiseMAF(x, n_clusters=2, **SMALL)
    pw.fit(epochs=3, progress=False)
    arrays = _pack(pw)
    meta = json.loads(bytes(arrays.pop("__meta__")).decode())
    for m in meta["config"]["members"]:
        assert m.pop("class") == "MAF"
    old = _build(meta, arrays, "old.mflow")
    np.testing.assert_array_equal(old.log_prob(x[:50]), pw.log_prob(x[:50]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"estimator": mf.KDE}, "flow class"),
        ({"estimator": "Nope"}, "flow class"),
        ({"estimator": mf.PiecewiseMAF}, "flow class"),
        ({"n_members": 1}, "n_members"),
        ({"n_members": 2.5}, "n_members"),
    ],
)
def test_bad_settings_are_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mf.Ensemble(_gauss(200), **kwargs)
