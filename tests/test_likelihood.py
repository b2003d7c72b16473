"""Nuisance-free and joint likelihoods: back to the evidence, joint evidence = full-space evidence."""

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest
from anesthetic.examples.perfect_ns import correlated_gaussian
from conftest import seeded
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import margflow as mf

BOX2 = np.array([[0.0, 1.0], [0.0, 1.0]])


def _unit_square(n):
    """Points of an n x n grid on the unit square and their log trapezoid weights."""
    g = np.linspace(0, 1, n)
    xx = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    w = np.full(n, g[1])
    w[[0, -1]] /= 2
    return xx, np.log(np.outer(w, w)).ravel()


def _grid_log_integral(fn, n=401):
    """log ∫ exp(fn) over the unit square."""
    xx, logw = _unit_square(n)
    return logsumexp(fn(xx) + logw)


def test_integrates_back_to_the_evidence():
    """∫ L(θ) π(θ) dθ = Z for a uniform box prior, and for a non-uniform prior inside it."""
    x = np.random.default_rng(0).multivariate_normal([0.4, 0.6], [[0.01, 0.004], [0.004, 0.02]], 3000)
    x = x[np.all((x > 0) & (x < 1), axis=1)]
    kde = mf.KDE(x, bounds=BOX2)
    like = mf.NuisanceFreeLikelihood(kde, logZ=-7.3)
    log_prior = mf.densities.UniformBox(BOX2)
    assert abs(_grid_log_integral(lambda t: like(t) + log_prior(t)) - (-7.3)) < 2e-3
    prior = multivariate_normal([0.5, 0.5], np.diag([0.2, 0.3]))
    like = mf.NuisanceFreeLikelihood(kde, prior=prior, logZ=-7.3)
    # the prior's mass outside the box is not in the integral; ∫ P = 1 still holds inside it
    assert abs(_grid_log_integral(lambda t: like(t) + prior.logpdf(t)) - (-7.3)) < 2e-3


def test_values_shapes_and_support():
    x = np.random.default_rng(1).uniform(0.2, 0.8, (1000, 2))
    kde = mf.KDE(x, bounds=BOX2)
    like = mf.NuisanceFreeLikelihood(kde, prior=[[0.1, 0.9], [0.0, 1.0]], logZ=1.5)
    pts = np.array([[0.5, 0.5], [0.95, 0.5], [1.5, 0.5], [np.nan, 0.5]])
    with pytest.raises(ValueError):
        like(pts)  # NaN input is an error, not a silent -inf
    out = like(pts[:3])
    assert out.dtype == np.float64 and out.shape == (3,)
    np.testing.assert_allclose(out[0], kde.log_prob(pts[:1])[0] + 1.5 + np.log(0.8))
    assert out[1] == -np.inf and out[2] == -np.inf  # outside the prior box; outside the bounds
    assert isinstance(like([0.5, 0.5]), float)
    assert like(np.zeros((0, 2))).shape == (0,)
    with pytest.raises(ValueError, match="2 parameters"):
        like(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="logZ="):
        mf.NuisanceFreeLikelihood(kde)


def _log_like(x):
    return -0.5 * np.sum(x * x, axis=1)


def test_pickles_into_a_process_pool():
    x = np.random.default_rng(2).uniform(0.2, 0.8, (500, 2))
    like = mf.NuisanceFreeLikelihood(mf.KDE(x, bounds=BOX2), logZ=0.0)
    pts = np.random.default_rng(3).uniform(0.1, 0.9, (8, 2))
    back = pickle.loads(pickle.dumps(like))
    np.testing.assert_array_equal(back(pts), like(pts))
    # "spawn": a forked child of a process running TensorFlow can deadlock (TensorFlow's threads
    # are not forked); spawned workers import margflow afresh and unpickle the likelihood
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        out = list(pool.map(like, [pts[:4], pts[4:]]))
    np.testing.assert_allclose(np.concatenate(out), like(pts))


# two experiments sharing θ = (θ0, θ1), each with one nuisance parameter of its own, uniform in the unit box
COV_A = np.array([[0.010, 0.003, 0.002], [0.003, 0.008, -0.002], [0.002, -0.002, 0.012]])
COV_B = np.array([[0.006, -0.002, 0.001], [-0.002, 0.012, 0.003], [0.001, 0.003, 0.009]])
MEAN_A, MEAN_B = np.array([0.45, 0.5, 0.5]), np.array([0.55, 0.45, 0.5])


def _exact_joint_logZ():
    """Z_AB = ∫ L_A(θ, α) L_B(θ, β) dθ dα dβ (unit volume; logL max 0), in closed form."""
    out = 0.0
    for cov in (COV_A, COV_B):
        out += 0.5 * np.linalg.slogdet(2 * np.pi * cov)[1]  # ∫ over α and θ of each Gaussian
    s = COV_A[:2, :2] + COV_B[:2, :2]
    return out + multivariate_normal(MEAN_A[:2], s).logpdf(MEAN_B[:2])


def _runs():
    box = np.array([[0.0, 1.0]] * 3)
    return seeded(11, correlated_gaussian, 500, MEAN_A, COV_A, box), seeded(
        12, correlated_gaussian, 500, MEAN_B, COV_B, box
    )


def test_joint_evidence_equals_the_full_space_evidence():
    """log ∫ L_A(θ) L_B(θ) π(θ) dθ from nuisance-free likelihoods = the full-space log Z_AB,
    within the nested-sampling error of log Z_A + log Z_B (with the exact marginal densities the
    combination alone is tested; with MAFs the whole path)."""
    a, b = _runs()
    sigma = np.hypot(a.logZ(200).std(), b.logZ(200).std())
    exact = _exact_joint_logZ()
    exact_marginals = []
    for run, mean, cov in ((a, MEAN_A, COV_A), (b, MEAN_B, COV_B)):
        d = mf.load_samples(run, params=[0, 1], bounds=BOX2)
        est = SimpleNamespace(
            params=["t0", "t1"],
            bounds=BOX2,
            dim=2,
            logZ=d.logZ,
            log_prob=multivariate_normal(mean[:2], cov[:2, :2]).logpdf,
        )
        exact_marginals.append(mf.NuisanceFreeLikelihood(est))
    joint = mf.JointLikelihood(*exact_marginals)
    assert abs(_grid_log_integral(joint) - exact) < 3 * sigma
    flows = []
    for run in (a, b):
        flow = mf.MAF(run, params=[0, 1], bounds=BOX2, seed=0)
        flow.fit(progress=False)
        flows.append(mf.NuisanceFreeLikelihood(flow))
    joint = mf.JointLikelihood(*flows)
    assert abs(_grid_log_integral(joint) - exact) < 3 * sigma


class _Named:
    """A likelihood with parameter names: the log of a product of 1-D Gaussians."""

    def __init__(self, params, bounds=None):
        self.params, self.bounds = params, bounds

    def __call__(self, x):
        return _log_like(np.atleast_2d(x) - 0.5)


def test_joint_matches_parameters_by_name():
    a = _Named(["h", "om"], [[0, 1], [0, 2]])
    b = _Named(["s8", "h"], [[0, 3], [0.2, 0.9]])
    joint = mf.JointLikelihood(a, b)
    assert joint.params == ["h", "om", "s8"] and joint.dim == 3
    np.testing.assert_array_equal(joint.bounds, [[0.2, 0.9], [0, 2], [0, 3]])
    x = np.random.default_rng(4).uniform(size=(5, 3))
    np.testing.assert_allclose(joint(x), a(x[:, [0, 1]]) + b(x[:, [2, 0]]))
    assert isinstance(joint(x[0]), float)
    with pytest.raises(ValueError, match="do not overlap"):
        mf.JointLikelihood(a, _Named(["h"], [[2, 3]]))
    with pytest.raises(TypeError, match="not a likelihood"):
        mf.JointLikelihood(a, lambda x: x)


def _grid_stats(log_like, n=801):
    """logZ, D_KL, logL_P, d_G of log_like under the uniform unit-square prior, by quadrature."""
    xx, logw = _unit_square(n)
    ll = log_like(xx)
    logw = ll + logw
    logz = logsumexp(logw)
    p = np.exp(logw - logz)
    mean = np.sum(p * ll)
    return {"logZ": logz, "D_KL": mean - logz, "logL_P": mean, "d_G": 2 * np.sum(p * (ll - mean) ** 2)}


class _ExactMarginal:
    """The exact θ-marginal of a run as an 'estimator' (data, log_prob, sample), to test the
    statistics without a density estimator's bias."""

    def __init__(self, run, mean, cov):
        self.data = mf.load_samples(run, params=[0, 1], bounds=BOX2)
        self.params, self.bounds, self.dim, self.logZ = self.data.params, BOX2, 2, self.data.logZ
        self._dist = multivariate_normal(mean[:2], cov[:2, :2])

    def log_prob(self, t):
        return np.atleast_1d(self._dist.logpdf(t))

    def sample(self, n, seed=None):
        return self._dist.rvs(n, random_state=np.random.default_rng(seed)).reshape(n, 2)


def _truth():
    exact = []
    for mean, cov in ((MEAN_A, COV_A), (MEAN_B, COV_B)):
        # exact L(θ) = ∫ L(θ, α) dα: the Gaussian's θ-marginal shape, scaled so ∫ L dθ = Z
        logz = 0.5 * np.linalg.slogdet(2 * np.pi * cov)[1]
        marg = multivariate_normal(mean[:2], cov[:2, :2])
        exact.append(lambda t, marg=marg, logz=logz: marg.logpdf(t) + logz)
    sa, sb = _grid_stats(exact[0]), _grid_stats(exact[1])
    sab = _grid_stats(lambda t: exact[0](t) + exact[1](t))
    return {
        "logR": sab["logZ"] - sa["logZ"] - sb["logZ"],
        "I": sa["D_KL"] + sb["D_KL"] - sab["D_KL"],
        "logS": sab["logL_P"] - sa["logL_P"] - sb["logL_P"],
        "d_G": sa["d_G"] + sb["d_G"] - sab["d_G"],
    }


def _information_limit(run, like):
    """sqrt(1/ESS - 1/N): ESS the Kish size of ``run``'s weights times ``like``, N that of the weights."""
    w = run.get_weights()
    theta = run[[0, 1]].to_numpy()
    lw = np.log(w) + like(theta)
    v = np.exp(lw - lw.max())
    return np.sqrt(v @ v / v.sum() ** 2 - w @ w / w.sum() ** 2)


def test_tension_statistics_against_quadrature():
    """logR, I, logS and d of two experiments with nuisance parameters against quadrature of the exact
    nuisance-free likelihoods, within 3 reported sigma: all four with the exact marginal densities
    (the statistics alone); logR, I and logS with MAFs of the nested-sampling runs, within 3 times the
    Monte Carlo bar and the information limit of the chains combined (d with MAFs is biased high,
    measured +0.25 against +0.5 with the plain probit map)."""
    a, b = _runs()
    truth = _truth()
    likes = [
        mf.NuisanceFreeLikelihood(_ExactMarginal(run, m, c)) for run, m, c in ((a, MEAN_A, COV_A), (b, MEAN_B, COV_B))
    ]
    t = mf.JointLikelihood(*likes).tension(n=20000, nsamples=300, seed=1, progress=False)
    assert list(t.columns.get_level_values(0)) == ["logR", "I", "logS", "d_G", "p", "sigma"]
    for key, value in truth.items():
        assert abs(t[key].mean() - value) < 3 * t[key].std(), (key, t[key].mean(), t[key].std(), value)
    likes = []
    for run in (a, b):
        flow = mf.MAF(run, params=[0, 1], bounds=BOX2, seed=0)
        flow.fit(progress=False)
        likes.append(mf.NuisanceFreeLikelihood(flow))
    t = mf.JointLikelihood(*likes).tension(n=20000, nsamples=300, seed=1, progress=False)
    # The bars are Monte Carlo errors of the quadrature-free estimate; the MAFs add the error of
    # anything learned from finite chains, at least the information limit sqrt(1/ESS - 1/N): the
    # Kish ESS of one experiment's likelihood over the other's weighted chain (the smaller one)
    limit = min(_information_limit(run, like) for run, like in ((a, likes[1]), (b, likes[0])))
    for key in ("logR", "I", "logS"):
        tol = 3 * np.hypot(t[key].std(), limit)
        assert abs(t[key].mean() - truth[key]) < tol, (key, t[key].mean(), tol, truth[key])
    with pytest.raises(ValueError, match="same parameters"):
        mf.JointLikelihood(likes[0], _Named([0, 1])).tension()
