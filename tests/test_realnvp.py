"""Real NVP specifics: the fused functions are TFP's RealNVP chain and training learns a curved
posterior. The start at the Gaussian fit is tested with the MAF's (test_maf.py); the shared
behaviour is in the property suite."""

import numpy as np
import pytest
import tensorflow as tf
from scipy.stats import multivariate_normal

import margflow as mf


@pytest.mark.parametrize("d", [2, 3, 5])
def test_fused_functions_are_the_tfp_chain(d):
    """With random weights (every coupling network, and the final layer, far from the identity), the
    fused density, inverse and forward equal TFP's chain of RealNVP bijectors; forward and inverse
    are each other's inverse."""
    x = np.random.default_rng(d).normal(size=(500, d))
    flow = mf.RealNVP(x, n_layers=3, hidden=(8, 8), seed=d)
    v = flow._variables[0]
    v.assign(np.random.default_rng(1).normal(0, 0.3, v.shape).astype(np.float32))
    graph, model = flow._graph, flow._model_args()
    z = tf.constant(np.random.default_rng(3).normal(size=(300, d)).astype(np.float32))
    fused = graph.log_prob(*model, z).numpy()
    assert np.ptp(fused - multivariate_normal(np.zeros(d)).logpdf(z.numpy())) > 1  # far from the identity
    np.testing.assert_allclose(fused, flow._flow.log_prob(z).numpy(), rtol=1e-5, atol=1e-4)
    eps = tf.constant(np.random.default_rng(4).normal(size=(300, d)).astype(np.float32))
    fz = graph.forward(*model, eps).numpy()
    np.testing.assert_allclose(fz, flow._bijector.forward(eps).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(graph.inverse(*model, tf.constant(fz))[0].numpy(), eps.numpy(), atol=1e-4)


def test_learns_a_curved_posterior():
    """On a banana, training lowers KL(p‖q) on fresh draws far below the Gaussian fit's (paired, in
    standard errors of the difference)."""
    rng = np.random.default_rng(7)

    def banana(n):
        a1 = rng.normal(1, np.sqrt(0.5), n)
        return np.column_stack([a1, rng.normal(a1**2, np.sqrt(1 / 40), n)])

    def logp(x):
        return -((x[:, 0] - 1) ** 2) - 20 * (x[:, 0] ** 2 - x[:, 1]) ** 2 + np.log(np.sqrt(20) / np.pi)

    x, xt = banana(5000), banana(10_000)
    flow = mf.RealNVP(x, seed=0)
    start = logp(xt) - flow.log_prob(xt)
    flow.fit(progress=False)
    end = logp(xt) - flow.log_prob(xt)
    diff = start - end
    assert diff.mean() > 10 * diff.std() / np.sqrt(len(diff)) and end.mean() < 0.5 * start.mean(), (
        start.mean(),
        end.mean(),
    )
