"""The box ↔ R^d maps: exact log-dets, round trips, the edges of the support."""

import numpy as np
import pytest
import tensorflow as tf

from margflow.bounds import (
    BLEND_GRID,
    BLEND_MAX_SD,
    BoxTransform,
    Preprocessor,
    Whitening,
    auto_bounds,
    choose_blend,
    ndtri,
    parse_bounds,
)

INF = np.inf
# two-sided, lower-only, upper-only, unbounded
BOUNDS = np.array([[-1.0, 2.0], [0.5, INF], [-INF, 3.0], [-INF, INF]])


def _inside(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [rng.uniform(-1, 2, n), 0.5 + rng.exponential(1.0, n), 3.0 - rng.exponential(1.0, n), rng.normal(0, 3, n)]
    )


@pytest.mark.parametrize("blend", [None, 3.0])
@pytest.mark.parametrize("kind", ["probit", "logit"])
def test_log_det_matches_autodiff(kind, blend):
    box = BoxTransform(BOUNDS, kind, blend)
    x = tf.constant(_inside(50))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y, ld = box.forward(x)
    jac = tape.batch_jacobian(y, x)
    _, logabsdet = tf.linalg.slogdet(jac)
    np.testing.assert_allclose(ld.numpy(), logabsdet.numpy(), rtol=1e-10, atol=1e-10)
    with tf.GradientTape() as tape:
        tape.watch(y)
        x2, ld_inv = box.inverse(y)
    _, logabsdet = tf.linalg.slogdet(tape.batch_jacobian(x2, y))
    np.testing.assert_allclose(ld_inv.numpy(), logabsdet.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ld_inv.numpy(), -ld.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("blend", [None, 3.0])
@pytest.mark.parametrize("kind", ["probit", "logit"])
def test_round_trip(kind, blend):
    box = BoxTransform(BOUNDS, kind, blend)
    x = _inside(1000, seed=1)
    y, _ = box.forward(x)
    x2, _ = box.inverse(y)
    np.testing.assert_allclose(x2.numpy(), x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("blend", [None, 3.0])
@pytest.mark.parametrize("kind", ["probit", "logit"])
def test_finite_on_and_next_to_the_bounds(kind, blend):
    box = BoxTransform(BOUNDS, kind, blend)
    edge = np.array(
        [
            [-1.0, 0.5, 3.0, 0.0],
            [2.0, 0.5 + 1e-12, 3.0 - 1e-12, 0.0],
            [-1.0 + 1e-12, 0.5, 3.0, 0.0],
            [2.0 - 1e-12, 0.5, 3.0, 0.0],
        ]
    )
    y, ld = box.forward(edge)
    assert np.all(np.isfinite(y.numpy())) and np.all(np.isfinite(ld.numpy()))
    # next to the upper bound, the distance to the bound keeps its precision:
    # 2 - 1e-12 and 2 - 2e-12 map to different points
    y1, _ = box.forward(np.array([[2.0 - 1e-12, 1.0, 0.0, 0.0], [2.0 - 2e-12, 1.0, 0.0, 0.0]]))
    assert y1.numpy()[0, 0] > y1.numpy()[1, 0]


@pytest.mark.parametrize("jit", [False, True])
def test_ndtri_full_precision_compiled_or_not(jit):
    """margflow's normal quantile matches scipy to ~1e-13 relative from 1e-300 to 1 - 1e-16,
    also under XLA (whose own ndtri is -inf below 1e-20)."""
    from scipy.special import ndtri as reference

    p = np.concatenate(
        [10.0 ** -np.linspace(1, 300, 600), np.linspace(1e-6, 1 - 1e-6, 2001), 1 - 10.0 ** -np.linspace(1, 16, 200)]
    )
    got = tf.function(ndtri, jit_compile=jit, autograph=False)(tf.constant(p)).numpy()
    ref = reference(p)
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("kind", ["probit", "logit"])
def test_blended_map_inverts_to_machine_precision(kind):
    """The blended map's inverse (Newton in the probit/logit) recovers points next to either
    bound to their distance from it, for weights up to 32, the whole float64 range."""
    frac = 10.0 ** -np.linspace(1, 300, 300)
    x = np.concatenate([np.linspace(0, 1, 501)[1:-1], frac, 1 - frac[:15]])
    for lam in (0.5, 4.0, 16.0, 32.0):
        box = BoxTransform(np.array([[0.0, 1.0]]), kind, lam)
        y, ld = box.forward(x[:, None])
        x2, ld2 = box.inverse(y)
        dist = np.minimum(x, 1 - x)
        assert np.max(np.abs(x2.numpy()[:, 0] - x) / dist) < 1e-12, lam
        np.testing.assert_allclose(ld2.numpy(), -ld.numpy(), rtol=1e-12, atol=1e-12)


def test_choose_blend_follows_the_shape_near_the_bounds():
    """Samples pressed on a bound keep a small linear weight, uniform samples none, samples well
    inside the range the largest weight whose Gaussian in y still falls to zero at the bounds
    (sd of y at most BLEND_MAX_SD); one-sided and open columns get 0."""
    rng = np.random.default_rng(5)
    n = 20_000
    x = np.column_stack(
        [
            rng.uniform(0, 1, n),
            rng.beta(2, 5, n),
            0.5 + 0.05 * rng.normal(size=n),
            rng.exponential(1, n),
            rng.normal(size=n),
        ]
    )
    bounds = np.array([[0, 1], [0, 1], [0, 1], [0, INF], [-INF, INF]])
    lam = choose_blend(x, np.ones(n), bounds)
    # a narrow Gaussian: y = λ(u - ½) + Φ^{-1}(u) is nearly linear, sd ≈ 0.05 (λ + sqrt(2π))
    largest = max(g for g in BLEND_GRID if 0.05 * (g + np.sqrt(2 * np.pi)) <= BLEND_MAX_SD)
    assert lam[0] == 0 and lam[1] <= 1 and lam[2] == largest and lam[3] == lam[4] == 0, lam
    for j in range(3):
        y, _ = BoxTransform(bounds[j : j + 1], "probit", lam[j]).forward(x[:, j : j + 1])
        assert lam[j] == 0 or y.numpy().std() <= BLEND_MAX_SD
    # the weights count: the same uniform column reweighted into a narrow bump
    w = np.exp(-0.5 * ((x[:, 0] - 0.5) / 0.05) ** 2)
    assert choose_blend(x[:, :1], w, bounds[:1])[0] == largest


def test_preprocessor_blend_given_chosen_and_from_old_files():
    x = _inside(400, seed=6)
    auto = Preprocessor.fit(x, np.ones(400), BOUNDS, list("abcd"))
    assert auto.auto_blend and auto.box.blend[1:].tolist() == [0, 0, 0]
    fixed = Preprocessor.fit(x, np.ones(400), BOUNDS, list("abcd"), blend=2.0)
    assert not fixed.auto_blend and fixed.box.blend.tolist() == [2, 0, 0, 0]
    with pytest.raises(ValueError, match="one number per parameter"):
        Preprocessor.fit(x, np.ones(400), BOUNDS, list("abcd"), blend=[1.0, 2.0])
    with pytest.raises(ValueError, match=">= 0"):
        Preprocessor.fit(x, np.ones(400), BOUNDS, list("abcd"), blend=-1.0)
    st = auto.state()
    again = Preprocessor.from_state(st["arrays"], st["config"])
    assert again.auto_blend and np.array_equal(again.box.blend, auto.box.blend)
    # a file from before the blend existed: plain probit, as given
    arrays = {k: v for k, v in st["arrays"].items() if k != "blend"}
    old = Preprocessor.from_state(arrays, {"kind": "probit"})
    assert not old.auto_blend and not old.box.blend.any()


def test_contains_includes_the_bounds():
    box = BoxTransform(BOUNDS)
    pts = np.array([[-1.0, 0.5, 3.0, 1e300], [2.0 + 1e-12, 1, 0, 0], [0, 0.5 - 1e-12, 0, 0], [0, 1, 3.0 + 1e-9, 0]])
    assert box.contains(pts).tolist() == [True, False, False, False]


def test_probit_of_uniform_is_standard_normal():
    """A uniform density in the box maps to exactly N(0, 1): the log-det is the normal log-pdf."""
    box = BoxTransform(np.array([[2.0, 5.0]]))
    x = np.linspace(2.0, 5.0, 7)[1:-1, None]
    y, ld = box.forward(x)
    from scipy.stats import norm

    np.testing.assert_allclose(-np.log(3.0) - ld.numpy(), norm.logpdf(y.numpy()[:, 0]), rtol=1e-12)


def test_whitening_gives_unit_covariance_and_exact_log_det():
    rng = np.random.default_rng(2)
    y = rng.multivariate_normal([1, -2], [[4, 1.5], [1.5, 1]], size=5000)
    w = rng.uniform(0.1, 2, size=5000)
    wh = Whitening.fit(y, w, ["a", "b"])
    z, ld = wh.forward(y)
    z = z.numpy()
    wn = w / w.sum()
    np.testing.assert_allclose(wn @ z, 0, atol=1e-12)
    np.testing.assert_allclose((z * wn[:, None]).T @ z, np.eye(2), atol=1e-12)
    cov = ((y - wn @ y) * wn[:, None]).T @ (y - wn @ y)
    np.testing.assert_allclose(ld.numpy(), -0.5 * np.linalg.slogdet(cov)[1], rtol=1e-12)


def test_whitening_rejects_linearly_dependent_parameters():
    rng = np.random.default_rng(3)
    a = rng.normal(size=100)
    with pytest.raises(ValueError, match="linear combinations"):
        Whitening.fit(np.column_stack([a, 2 * a + 1]), np.ones(100), ["a", "b"])


def test_preprocessor_state_round_trip():
    x = _inside(200, seed=4)
    pre = Preprocessor.fit(x, np.ones(200), BOUNDS, list("abcd"), "logit")
    st = pre.state()
    pre2 = Preprocessor.from_state(st["arrays"], st["config"])
    np.testing.assert_array_equal(pre.forward(x)[0].numpy(), pre2.forward(x)[0].numpy())


def test_parse_bounds_forms():
    params = ["a", "b", "c"]
    assert np.isinf(parse_bounds(None, params)).all()
    b = parse_bounds({"a": (0, 1), "c": (None, 5)}, params)
    np.testing.assert_array_equal(b, [[0, 1], [-INF, INF], [-INF, 5]])
    np.testing.assert_array_equal(
        parse_bounds([[0, 1], [None, None], [2, None]], params), [[0, 1], [-INF, INF], [2, INF]]
    )
    with pytest.raises(ValueError, match="unknown parameters"):
        parse_bounds({"z": (0, 1)}, params)
    with pytest.raises(ValueError, match="shape"):
        parse_bounds([[0, 1]], params)
    with pytest.raises(ValueError, match="lower bound must be below"):
        parse_bounds({"a": (1, 0)}, params)
    with pytest.raises(ValueError, match="NaN"):
        parse_bounds({"a": (np.nan, 1)}, params)
    with pytest.raises(ValueError, match="auto"):
        parse_bounds("guess", params)


def test_auto_bounds_reproduces_margarine_estimate():
    x = np.linspace(0, 1, 11)[:, None]
    b = auto_bounds(x, np.ones(11))
    n = 11
    np.testing.assert_allclose(b, [[((n - 2) * 0 - 1) / (n - 3), ((n - 2) * 1 - 0) / (n - 3)]])
