"""PiecewiseMAF: choice of k, labels, weights, the mixture's normalisation, bad input.

The shared properties run over the piecewise case of conftest.py in
test_properties.py (normalisation over the box within 2%, round trips,
log-det per member, save/load).
"""

import numpy as np
import pytest

import margflow as mf

SMALL = {"n_layers": 2, "hidden": (16, 16)}
FIT = {"epochs": 30, "patience": 10, "progress": False}


def _circle(n=8000, seed=0):
    rng = np.random.default_rng(seed)
    sigma = 2.0 / 3.0 * np.sin(np.pi / 8)
    angle = 2 * np.pi * rng.integers(0, 8, n) / 8
    centres = 2.0 * np.column_stack([np.cos(angle), np.sin(angle)])
    return centres + sigma * rng.normal(size=(n, 2))


def _two_blobs(n=1200, seed=1):
    rng = np.random.default_rng(seed)
    first = rng.uniform(size=n) < 0.5
    x = np.where(first[:, None], rng.normal([-3, 0], 0.5, (n, 2)), rng.normal([3, 1], 0.5, (n, 2)))
    return x, first


def test_silhouette_finds_the_eight_gaussians():
    pw = mf.PiecewiseMAF(_circle(), seed=0, **SMALL)
    assert pw.n_clusters == 8
    assert max(pw._silhouette, key=pw._silhouette.get) == 8
    # each cluster holds one Gaussian: shares of about 1/8 (binomial error of 8000 draws)
    assert np.all(np.abs(pw.mixture_weights - 1 / 8) < 4 * np.sqrt(1 / 8 * 7 / 8 / 8000))


def test_user_labels_are_kept_and_give_the_clusters():
    x, first = _two_blobs()
    names = np.where(first, "left", "right")
    pw = mf.PiecewiseMAF(x, labels=names, **SMALL)
    assert pw.n_clusters == 2
    np.testing.assert_array_equal(pw.labels, names)
    np.testing.assert_allclose(pw.mixture_weights, [first.mean(), 1 - first.mean()])


def test_labels_follow_the_rows_kept():
    x, first = _two_blobs()
    x = x.copy()
    x[:7, 0] = np.nan
    with pytest.warns(UserWarning, match="dropped 7"):
        pw = mf.PiecewiseMAF(x, labels=first.astype(int), **SMALL)
    np.testing.assert_array_equal(pw.labels, first[7:].astype(int))


def test_mixture_weights_are_the_weighted_shares():
    """Weights are honoured by k-means and the mixture: the shares are the clusters' summed weights."""
    x, first = _two_blobs()
    w = np.where(first, 3.0, 1.0)
    pw = mf.PiecewiseMAF(x, weights=w, n_clusters=2, **SMALL)
    share = w[first].sum() / w.sum()
    left = np.argmin([m.data.theta[:, 0].mean() for m in pw.members])
    assert pw.mixture_weights[left] == pytest.approx(share, rel=1e-12)
    # the weighted sample and its equal-weight resample give the same clustering and shares
    idx = np.random.default_rng(2).choice(len(x), size=20 * len(x), p=w / w.sum())
    rs = mf.PiecewiseMAF(x[idx], n_clusters=2, **SMALL)
    left_rs = np.argmin([m.data.theta[:, 0].mean() for m in rs.members])
    se = np.sqrt(share * (1 - share) / len(idx))
    assert abs(rs.mixture_weights[left_rs] - share) < 4 * se


def test_log_prob_is_the_normalised_mixture():
    """log p = logsumexp(log W_k + log p_k), not off by log k: in a cluster's core the other member is negligible."""
    x, first = _two_blobs()
    pw = mf.PiecewiseMAF(x, labels=first, **SMALL)
    pw.fit(**FIT)
    core = np.array([[-3.0, 0.0], [3.0, 1.0]])
    per_member = np.stack([m.log_prob(core) for m in pw.members]) + np.log(pw.mixture_weights)[:, None]
    np.testing.assert_allclose(pw.log_prob(core), np.logaddexp(per_member[0], per_member[1]), rtol=1e-12)
    # Monte Carlo: E_q[1/q] over a uniform box around both blobs is the box volume times ∫p over it
    box = np.array([[-7.0, 7.0], [-4.0, 5.0]])
    u = np.random.default_rng(3).uniform(box[:, 0], box[:, 1], size=(200_000, 2))
    p = np.exp(pw.log_prob(u))
    vol = np.prod(box[:, 1] - box[:, 0])
    integral, se = vol * p.mean(), vol * p.std() / np.sqrt(len(p))
    assert abs(integral - 1) < max(4 * se, 0.01)


def test_transform_picks_clusters_by_the_first_coordinate():
    x, first = _two_blobs()
    pw = mf.PiecewiseMAF(x, labels=first, **SMALL)
    pw.fit(**FIT)
    edge = pw.mixture_weights[0]
    u = np.array([[edge * 0.5, 0.5], [edge + (1 - edge) * 0.5, 0.5]])
    got = pw.transform(u)
    np.testing.assert_allclose(got[0], pw.members[0].transform([[0.5, 0.5]])[0])
    np.testing.assert_allclose(got[1], pw.members[1].transform([[0.5, 0.5]])[0])


def test_a_tiny_cluster_lowers_k_with_a_warning():
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(0, 1, (500, 2)), rng.normal(40, 0.1, (5, 2))])
    with pytest.warns(UserWarning, match="lowering the number of clusters from 2 to 1"):
        pw = mf.PiecewiseMAF(x, n_clusters=2, **SMALL)
    assert pw.n_clusters == 1


def test_bad_inputs():
    x, first = _two_blobs()
    with pytest.raises(ValueError, match="n_clusters=100 needs at least"):
        mf.PiecewiseMAF(x, n_clusters=100)
    with pytest.raises(ValueError, match="one label per input sample"):
        mf.PiecewiseMAF(x, labels=first[:-1])
    with pytest.raises(ValueError, match="labels or n_clusters"):
        mf.PiecewiseMAF(x, labels=first, n_clusters=2)
    w = np.where(first, 0.0, 1.0)
    with pytest.raises(ValueError, match="no sample with positive weight"):
        mf.PiecewiseMAF(x, weights=w, labels=first)
    small = first.copy().astype(int)
    small[np.flatnonzero(~first)[:5]] = 7
    with pytest.raises(ValueError, match="cluster 7 has 5 samples"):
        mf.PiecewiseMAF(x, labels=small)
    with pytest.raises(ValueError, match="n_clusters must be a positive integer"):
        mf.PiecewiseMAF(x, n_clusters=0)
