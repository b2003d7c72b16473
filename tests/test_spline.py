"""SplineFlow specifics: identity start, agreement with TFP's spline chain, arguments, save/load."""

import numpy as np
import pytest
import tensorflow as tf
from scipy.stats import multivariate_normal

import margflow as mf


def test_untrained_flow_is_the_weighted_gaussian_fit():
    rng = np.random.default_rng(0)
    x = rng.multivariate_normal([1, -1, 0.5], [[1, 0.5, 0], [0.5, 2, 0.3], [0, 0.3, 0.5]], size=2000)
    w = rng.uniform(0.1, 1, 2000)
    flow = mf.SplineFlow(x, weights=w, n_layers=2, hidden=(8, 8), n_bins=5)
    wn = w / w.sum()
    mean = wn @ x
    cov = ((x - mean) * wn[:, None]).T @ (x - mean)
    np.testing.assert_allclose(flow.log_prob(x[:200]), multivariate_normal(mean, cov).logpdf(x[:200]), rtol=1e-5)


def _perturbed_flow(x, bound=2.5):
    """A flow whose splines are far from the identity (random weights), so every branch is exercised.

    (Much larger random weights make bins of slope ~1e-3, where float32 round trips lose
    digits; TFP's own chain does the same.)"""
    flow = mf.SplineFlow(x, n_layers=3, hidden=(16, 16), n_bins=6, bound=bound, seed=4)
    rng = np.random.default_rng(1)
    flat = flow._variables[0]
    flow._variables[0].assign(flat + rng.normal(0, 0.2, flat.shape).astype(np.float32))
    return flow


def test_fused_functions_are_the_tfp_chain():
    """The fused density, inverse and forward (sampling) equal TFP's MaskedAutoregressiveFlow of
    RationalQuadraticSpline bijectors, inside and beyond the spline range (identity tails)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 3)) * [1.0, 2.0, 0.5]
    flow = _perturbed_flow(x)
    graph, model = flow._graph, flow._model_args()
    z = (rng.normal(size=(400, 3)) * 1.6).astype(np.float32)  # some beyond ±2.5
    assert np.any(np.abs(z) > 2.5)
    fused = graph.log_prob(*model, tf.constant(z)).numpy()
    assert np.ptp(fused - multivariate_normal(np.zeros(3)).logpdf(z)) > 1  # far from the identity
    np.testing.assert_allclose(fused, flow._flow.log_prob(tf.constant(z)).numpy(), rtol=1e-4, atol=1e-4)
    eps = graph.inverse(*model, tf.constant(z))[0].numpy()
    np.testing.assert_allclose(eps, flow._bijector.inverse(tf.constant(z)).numpy(), atol=1e-4)
    e = rng.normal(size=(400, 3)).astype(np.float32)
    fused_z = graph.forward(*model, tf.constant(e)).numpy()
    np.testing.assert_allclose(fused_z, flow._bijector.forward(tf.constant(e)).numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(graph.inverse(*model, tf.constant(fused_z))[0].numpy(), e, atol=1e-4)


def test_density_integrates_to_one_in_2d():
    """A far-from-identity spline flow is a normalised density: a grid sum over the z-plane (its
    samples stay within ±5; the grid spacing 0.005 resolves its narrowest bins, 0.0025 moves the
    sum by 2e-4)."""
    x = np.random.default_rng(3).normal(size=(1000, 2))
    flow = _perturbed_flow(x, bound=3.0)
    g = np.linspace(-6, 6, 2401)
    total = 0.0
    for row in np.array_split(g, 12):
        zz = np.stack(np.meshgrid(g, row), -1).reshape(-1, 2).astype(np.float32)
        total += np.exp(flow._graph.log_prob(*flow._model_args(), tf.constant(zz)).numpy().astype(np.float64)).sum()
    mass = total * (g[1] - g[0]) ** 2
    assert abs(mass - 1) < 2e-3, mass


def test_fit_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(2)
    a = rng.normal(size=3000)
    x = np.column_stack([a, a**2 + 0.3 * rng.normal(size=3000)])  # curved
    flow = mf.SplineFlow(x, params=["a", "b"], n_layers=2, hidden=(16, 16), n_bins=6, seed=1)
    start = -flow.log_prob(x).mean()
    flow.fit(epochs=40, patience=10, progress=False)
    assert -flow.log_prob(x).mean() < start - 0.3  # the curve is learnt
    flow.save(tmp_path / "s.mflow")
    back = mf.load(tmp_path / "s.mflow")
    assert type(back) is mf.SplineFlow and back.config == flow.config
    np.testing.assert_array_equal(back.log_prob(x[:50]), flow.log_prob(x[:50]))
    np.testing.assert_array_equal(back.sample(20, seed=3), flow.sample(20, seed=3))


@pytest.mark.parametrize(
    "kw, match",
    [({"n_bins": 1}, "n_bins"), ({"n_bins": 2.5}, "n_bins"), ({"bound": 0}, "bound"), ({"bound": np.inf}, "bound")],
)
def test_bad_arguments(kw, match):
    x = np.random.default_rng(0).normal(size=(200, 2))
    with pytest.raises(ValueError, match=match):
        mf.SplineFlow(x, **kw)
