"""The property suite every estimator passes (see ../shared/STYLE.md)."""

import numpy as np
import pytest
import tensorflow as tf
from scipy.stats import multivariate_normal, norm

import margflow as mf
from margflow.estimator import _programs


def _inside_points(est, n=500, seed=0):
    return est.sample(n, seed=seed)


def test_shapes_and_dtypes(estimator):
    d = estimator.dim
    x = estimator.sample(7, seed=0)
    assert x.shape == (7, d) and x.dtype == np.float64
    lp = estimator.log_prob(x)
    assert lp.shape == (7,) and lp.dtype == np.float64
    assert estimator.log_prob(x[0]).shape == (1,)
    assert estimator.log_prob(np.empty((0, d))).shape == (0,)
    u = np.random.default_rng(0).uniform(size=(5, d))
    assert estimator.transform(u).shape == (5, d)
    assert estimator.inverse_transform(x).shape == (7, d)
    assert estimator.bounds.shape == (d, 2) and len(estimator.params) == d


def test_finite_inside_and_minus_inf_outside(estimator):
    x = _inside_points(estimator, 2000)
    assert np.all(np.isfinite(estimator.log_prob(x)))
    b = estimator.bounds
    base = x[:1].copy()
    for i in range(estimator.dim):
        for side, step in ((0, -1.0), (1, 1.0)):
            if np.isfinite(b[i, side]):
                for offset in (1e-9, 1.0, 1e6):
                    p = base.copy()
                    p[0, i] = b[i, side] + step * offset * max(1.0, abs(b[i, side]))
                    assert estimator.log_prob(p)[0] == -np.inf
            else:
                p = base.copy()
                p[0, i] = b[i, side] if np.isinf(b[i, side]) else p[0, i]
                # ±inf in an open direction has zero density, never NaN
                assert estimator.log_prob(p)[0] == -np.inf


def test_finite_on_and_next_to_the_bounds(estimator):
    b = estimator.bounds
    base = _inside_points(estimator, 1, seed=3)
    rows = []
    for i in range(estimator.dim):
        for side, inward in ((0, 1.0), (1, -1.0)):
            if np.isfinite(b[i, side]):
                for offset in (0.0, 1e-12, 1e-9):
                    p = base.copy()
                    p[0, i] = b[i, side] + inward * offset
                    rows.append(p[0])
    if not rows:
        pytest.skip("unbounded estimator")
    lp = estimator.log_prob(np.array(rows))
    assert np.all(np.isfinite(lp)), lp


def test_nan_input_is_an_error(estimator):
    x = _inside_points(estimator, 3)
    x[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        estimator.log_prob(x)
    with pytest.raises(ValueError, match=r"shape \(n, "):
        estimator.log_prob(np.zeros((3, estimator.dim + 1)))


def test_samples_inside_bounds_and_seeded(estimator):
    x = estimator.sample(20_000, seed=7)
    assert estimator._pre.box.contains(x).all()
    np.testing.assert_array_equal(x, estimator.sample(20_000, seed=7))
    assert not np.array_equal(x[:10], estimator.sample(10, seed=8))


def test_transform_round_trip_and_row_order(estimator):
    rng = np.random.default_rng(1)
    u = rng.uniform(0.01, 0.99, size=(1000, estimator.dim))
    x = estimator.transform(u)
    # float32 network: agreement to ~1e-5 in u
    back = estimator.inverse_transform(x)
    if isinstance(estimator, mf.Ensemble):
        # overlapping members: u comes back where its member is the most responsible one at x
        k = np.minimum((u[:, 0] * estimator.n_members).astype(int), estimator.n_members - 1)
        same = np.argmax(estimator._member_log_probs(x), axis=0) == k
        assert same.mean() > 0.2, "the members' own points should often be their most responsible"
        np.testing.assert_allclose(back[same], u[same], atol=2e-5)
        assert np.all((back >= 0) & (back <= 1))
    else:
        np.testing.assert_allclose(back, u, atol=2e-5)
    x0 = estimator.sample(500, seed=2)
    np.testing.assert_allclose(estimator.transform(estimator.inverse_transform(x0)), x0, rtol=1e-4, atol=1e-5)
    perm = rng.permutation(len(u))
    np.testing.assert_array_equal(estimator.transform(u[perm]), x[perm])
    np.testing.assert_array_equal(estimator.transform(u), x)  # deterministic
    corners = estimator.transform(np.array([np.zeros(estimator.dim), np.ones(estimator.dim)]))
    assert np.all(~np.isnan(corners))
    with pytest.raises(ValueError, match="unit hypercube"):
        estimator.transform(u * 2)


def test_transform_of_uniform_is_distributed_as_the_estimator(estimator):
    """transform(U) and sample() are the same distribution: compare their mean log-density."""
    u = np.random.default_rng(4).uniform(size=(20_000, estimator.dim))
    a = estimator.log_prob(estimator.transform(u))
    b = estimator.log_prob(estimator.sample(20_000, seed=5))
    se = np.sqrt(a.var() / len(a) + b.var() / len(b))
    assert abs(a.mean() - b.mean()) < 4 * se


def _parts(estimator):
    """The estimator, or the member flows of a mixture: the parts that run compiled programs."""
    return getattr(estimator, "members", [estimator])


def test_log_det_against_autodiff(estimator):
    """log_prob(x) = log N(eps) - log|det dx/deps| with the Jacobian from tf autodiff (per member of a mixture)."""
    for part in _parts(estimator):
        eps = tf.constant(np.random.default_rng(6).normal(size=(64, part.dim)))
        with tf.GradientTape() as tape:
            tape.watch(eps)
            # the uncompiled program: XLA cannot differentiate the sampling loop
            x = _programs(part._graph, part._pre.structure, part._dtype)["from_base"].plain(*_args(part), eps)
        _, logabsdet = tf.linalg.slogdet(tape.batch_jacobian(x, eps))
        expected = norm.logpdf(eps.numpy()).sum(axis=1) - logabsdet.numpy()
        got = part.log_prob(x.numpy())
        # the network runs in float32: log-densities agree to ~1e-4 of their size
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-3)


def test_normalised(estimator):
    """Monte Carlo integral of p over its support is 1 within 2%.

    Importance sampling in the whitened space z, where the samples have unit
    covariance, with a N(0, 1.5^2 I) proposal mapped into the box by the
    preprocessing: ∫ p(x) dx = E_g[p(x(z)) |dx/dz| / g(z)].
    """
    n = 200_000
    g = multivariate_normal(np.zeros(estimator.dim), 1.5**2 * np.eye(estimator.dim))
    z = g.rvs(n, random_state=np.random.default_rng(9)).reshape(n, -1)
    x, log_det = estimator._pre.inverse(z)
    ratio = np.exp(estimator.log_prob(x.numpy()) + log_det.numpy() - g.logpdf(z))
    integral, se = ratio.mean(), ratio.std() / np.sqrt(n)
    assert se < 0.005, f"the check is too noisy to be a test: standard error {se}"
    assert abs(integral - 1) < 0.02, (integral, se)


def test_save_load_identical(estimator, tmp_path):
    path = tmp_path / "model.mflow"
    estimator.save(path)
    other = mf.load(path)
    assert type(other) is type(estimator)
    assert other.params == estimator.params
    np.testing.assert_array_equal(other.bounds, estimator.bounds)
    x = estimator.sample(1000, seed=1)
    np.testing.assert_array_equal(other.log_prob(x), estimator.log_prob(x))
    np.testing.assert_array_equal(other.sample(100, seed=3), estimator.sample(100, seed=3))
    u = np.random.default_rng(0).uniform(size=(50, estimator.dim))
    np.testing.assert_array_equal(other.transform(u), estimator.transform(u))
    assert other.history == estimator.history
    assert other.config == estimator.config


def test_bootstrap_refits_the_same_estimator(estimator):
    """A bootstrap refit: same kind, settings and training, samples reweighted by Exp(1), reproducible."""
    (a,) = estimator.bootstrap(1, seed=4, progress=False)
    (b,) = estimator.bootstrap(1, seed=4, progress=False)
    assert type(a) is type(estimator) and a.params == estimator.params
    np.testing.assert_array_equal(a.bounds, estimator.bounds)
    np.testing.assert_equal(a._settings(), estimator._settings())
    assert a._fit_kwargs() == estimator._fit_kwargs()
    w = estimator.data.weights * a.bootstrap_weights
    np.testing.assert_allclose(a.data.weights / a.data.weights.sum(), w / w.sum(), rtol=1e-12)
    x = estimator.sample(500, seed=2)
    np.testing.assert_array_equal(a.log_prob(x), b.log_prob(x))
    assert np.abs(a.log_prob(x) - estimator.log_prob(x)).max() > 1e-3


def test_compiled_once(estimator):
    """log_prob is one traced function for every batch size."""
    for n in (1, 10, 1000, 10_000):
        estimator.log_prob(estimator.sample(n, seed=n))
    for part in _parts(estimator):
        assert _programs(part._graph, part._pre.structure, part._dtype)["log_prob"].tracing_count() == 1


def test_batches_equal_rows(estimator):
    """Padding and blocking do not change results: a batch equals its rows one by one.

    The network runs in float32, and XLA's kernels for 1 and 64 rows round
    differently: agreement is to float32 precision (eps 1.2e-7) grown through
    the layers, not bit for bit. The rounding is relative to the scale of the
    network's values (the standardised columns), so the absolute tolerance of
    ``transform`` scales with each column's spread.
    """
    x = estimator.sample(37, seed=8)
    rows = np.concatenate([estimator.log_prob(r) for r in x])
    np.testing.assert_allclose(estimator.log_prob(x), rows, rtol=1e-5, atol=1e-5)
    u = np.random.default_rng(3).uniform(size=(37, estimator.dim))
    rows = np.stack([estimator.transform(r) for r in u])  # one (d,) point gives (d,)
    np.testing.assert_allclose(estimator.transform(u), rows, rtol=2e-5, atol=2e-5 * x.std(axis=0).min())


def _args(estimator):
    return (estimator._model_args(), estimator._pre.tensors, estimator._support)


def test_program_falls_back_when_xla_cannot_compile():
    """An op XLA cannot compile gives one warning and the plain-graph result, not an error."""
    from margflow.estimator import _Program

    def fn(scale, x):
        return scale * tf.numpy_function(np.sin, [x], tf.float64)

    program = _Program(fn, "sine")
    x = np.linspace(0, 1, 6).reshape(3, 2)
    with pytest.warns(UserWarning, match="XLA compilation of sine failed"):
        out = program((tf.constant(2.0, tf.float64),), tf.constant(x))
    np.testing.assert_allclose(out.numpy(), 2 * np.sin(x))
    assert not program.jit
