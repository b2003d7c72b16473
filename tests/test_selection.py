"""Model selection: a grid scored on held-out samples, through any executor with ``map``."""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import margflow as mf
from margflow.selection import histogram_kl


def _banana(n, seed):
    rng = np.random.default_rng(seed)
    a1 = rng.normal(1, np.sqrt(0.5), n)
    return np.column_stack([a1, rng.normal(a1**2, np.sqrt(1 / 40), n)])


X = _banana(3000, 0)
FAST = {"epochs": [60], "patience": [20]}


def test_grid_ranks_a_deep_flow_above_a_shallow_one_on_a_banana():
    """One affine layer cannot bend to a banana; the held-out NLL says so by many standard errors,
    and the best model is returned trained, its held-out NLL the table's top score."""
    sel = mf.select_model(X, {"architecture": ["MAF", "RealNVP"], "n_layers": [1, 4], **FAST}, seed=1)
    t = sel.table
    assert len(t) == 4 and list(t["score"]) == sorted(t["score"])
    assert t["n_layers"].iloc[0] == 4 and set(t["n_layers"].iloc[2:]) == {1}, t
    gap = t["score"].iloc[2] - t["score"].iloc[1]
    assert gap > 3 * np.hypot(t["score_err"].iloc[2], t["score_err"].iloc[1]), t
    assert type(sel.best).__name__ == t["architecture"].iloc[0] and sel.best.config["n_layers"] == 4
    # the held-out part is the one split_indices gives with this seed
    from margflow.flows.train import split_indices

    _, test = split_indices(len(X), 0.2, 1)
    assert np.isclose(-sel.best.log_prob(X[test]).mean(), t["score"].iloc[0], rtol=1e-5)


def test_process_pool_gives_the_same_table():
    grid = {"architecture": ["RealNVP"], "n_layers": [1, 2], "hidden": [(8, 8)], **FAST}
    serial = mf.select_model(X, grid, seed=2).table
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        pooled = mf.select_model(X, grid, seed=2, executor=pool).table
    np.testing.assert_allclose(pooled["score"], serial["score"], rtol=1e-4)
    assert list(pooled["n_layers"]) == list(serial["n_layers"])


def test_histogram_kl_score():
    """The histogram metric is near zero for draws of the same distribution and large for a shifted
    one; as a grid score it ranks a deep flow first too."""
    same, shifted = _banana(20_000, 1), _banana(20_000, 2) + [0.5, 0.0]
    w = np.ones(len(X))
    assert histogram_kl(X, w, same) < 0.05 < histogram_kl(X, w, shifted)
    sel = mf.select_model(X, {"n_layers": [1, 4], **FAST}, score="hist_kl", seed=3)
    assert sel.table["n_layers"].iloc[0] == 4 and sel.table["score_err"].isna().all()


def test_bad_grids_say_what_is_wrong():
    with pytest.raises(ValueError, match="architecture must be one of"):
        mf.select_model(X, {"architecture": ["Glow"]})
    with pytest.raises(ValueError, match="score must be one of"):
        mf.select_model(X, {"n_layers": [2]}, score="aic")
    with pytest.raises(ValueError, match="non-empty dict"):
        mf.select_model(X, {})
    with pytest.raises(ValueError, match="empty"):
        mf.select_model(X, {"n_layers": []})
