"""Importance-sampling evidence: exact answers, every trial counted, honest error bars."""

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import margflow as mf

MEAN = np.array([0.4, 0.55])
COV = np.array([[0.004, 0.0015], [0.0015, 0.006]])
GAUSS = multivariate_normal(MEAN, COV)
BOX = np.array([[0.0, 1.0], [0.0, 1.0]])


def _log_like(x):
    """Gaussian likelihood with maximum 1: Z = (2π)^{d/2} |Σ|^{1/2} / V in the unit box."""
    return GAUSS.logpdf(x) - GAUSS.logpdf(MEAN)


EXACT = -GAUSS.logpdf(MEAN)  # log ∫ L dθ over the unit box (mass outside it < 1e-12)


def _posterior(n=4000, seed=0):
    x = GAUSS.rvs(n, random_state=np.random.default_rng(seed))
    return x[np.all((x > 0) & (x < 1), axis=1)]


@pytest.fixture(scope="module")
def kde():
    return mf.KDE(_posterior(), bounds=BOX)


def test_gaussian_in_a_box_with_a_flow():
    flow = mf.MAF(_posterior(), bounds=BOX, seed=0)
    flow.fit(progress=False)
    res = mf.importance_evidence(_log_like, flow, n=20000, seed=1, progress=False)
    assert abs(res.logZ - EXACT) < 3 * res.logZ_err
    assert 0.5 * res.n < res.ess <= res.n and res.n_zero == 0
    np.testing.assert_allclose(res.weights.sum(), 1.0)
    post = res.to_anesthetic()
    np.testing.assert_allclose(post[res.params[0]].mean(), MEAN[0], atol=4 * np.sqrt(COV[0, 0] / res.ess))


def test_error_bar_is_the_scatter_over_repeats(kde):
    """The reported √(1/ESS - 1/N) matches the spread of log Z over 25 independent repeats."""
    runs = [mf.importance_evidence(_log_like, kde, n=3000, seed=s, progress=False) for s in range(25)]
    logz = np.array([r.logZ for r in runs])
    err = np.mean([r.logZ_err for r in runs])
    assert 0.6 < logz.std() / err < 1.5
    assert abs(logz.mean() - EXACT) < 3 * err / np.sqrt(len(runs))


def test_every_trial_counts_including_rejected_ones():
    """An unbounded proposal in a prior box that cuts the posterior: trials outside the box have zero
    weight and still count; dropping them from N (as a published implementation did) biases Z high."""
    box = np.array([[0.0, 0.4], [0.0, 1.0]])  # cuts the posterior at its mean in θ0
    proposal = mf.KDE(_posterior())  # unbounded
    res = mf.importance_evidence(_log_like, proposal, prior=box, n=20000, seed=2, progress=False)
    # ∫_box L π = (1/V) ∫_{θ0<0.4} L: half the Gaussian's mass, V = 0.4
    exact = EXACT + np.log(0.5) - np.log(0.4)
    assert 0.3 * res.n < res.n_zero < 0.7 * res.n
    assert abs(res.logZ - exact) < 3 * res.logZ_err
    undercounted = res.logZ + np.log(res.n) - np.log(res.n - res.n_zero)
    assert undercounted - exact > 10 * res.logZ_err


def test_defensive_mixture_rescues_a_too_narrow_proposal():
    narrow = mf.KDE(GAUSS.rvs(4000, random_state=np.random.default_rng(3)) * 0.5 + 0.5 * MEAN, bounds=BOX)
    res = mf.importance_evidence(_log_like, narrow, n=20000, defensive=0.3, seed=4, progress=False)
    assert abs(res.logZ - EXACT) < 3 * res.logZ_err
    # the prior part of the mixture bounds every weight L π / q_mix by L_max / 0.3 = 1 / 0.3
    w = res.weights * res.n * np.exp(res.logZ)
    assert w.max() <= 1 / 0.3


def test_non_vectorised_likelihood_and_errors(kde):
    a = mf.importance_evidence(_log_like, kde, n=200, seed=5, progress=False)
    b = mf.importance_evidence(lambda t: float(_log_like(t)), kde, n=200, vectorized=False, seed=5)
    assert a.logZ == pytest.approx(b.logZ, abs=1e-12)
    with pytest.raises(ValueError, match="NaN"):
        mf.importance_evidence(lambda t: np.full(len(t), np.nan), kde, n=50, progress=False)
    with pytest.raises(ValueError, match="values for"):
        mf.importance_evidence(lambda t: np.zeros(3), kde, n=50, progress=False)
    with pytest.raises(ValueError, match="defensive"):
        mf.importance_evidence(_log_like, kde, n=50, defensive=1.0, progress=False)
    with pytest.raises(ValueError, match="defensive mixture"):
        mf.importance_evidence(_log_like, kde, prior=lambda t: np.zeros(len(t)), n=50, defensive=0.1)
    with pytest.raises(ValueError, match="zero weight"):
        mf.importance_evidence(lambda t: np.full(len(t), -np.inf), kde, n=50, progress=False)
    with pytest.warns(UserWarning, match="inside the prior box"):
        mf.importance_evidence(_log_like, kde, prior=[[-1, 2], [0, 1]], n=50, progress=False)


def test_joint_evidence_of_nuisance_free_likelihoods(kde):
    """The joint likelihood of one experiment with itself: Z_AA by importance sampling equals the
    grid value of ∫ L_A² π."""
    like = mf.NuisanceFreeLikelihood(kde, logZ=EXACT)
    joint = mf.JointLikelihood(like, like)
    res = mf.importance_evidence(joint, kde, n=20000, seed=6, progress=False)
    g = np.linspace(0, 1, 401)
    xx = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    grid = logsumexp(joint(xx)) + 2 * np.log(g[1])
    assert abs(res.logZ - grid) < 3 * res.logZ_err + 1e-3  # + the grid's own error


def test_reweight_corrects_a_wrong_estimator_to_exact_moments():
    """A KDE fit to samples 1.4x too wide, reweighted toward the Gaussian: the reweighted mean and
    covariance match the exact ones within their reported errors, the normaliser of the
    unnormalised target is found, and the ESS fraction is that of the proposal mismatch."""
    wide = multivariate_normal(MEAN, 1.96 * COV).rvs(4000, random_state=np.random.default_rng(3))
    q = mf.KDE(wide[np.all((wide > 0) & (wide < 1), axis=1)], bounds=BOX)
    res = mf.reweight(q, _log_like, n=20000, seed=4, progress=False)
    mean, err = res.expect(lambda t: t)
    assert np.all(np.abs(mean - MEAN) < 4 * err)
    d = res.samples - MEAN
    cov, cov_err = res.expect(lambda t: np.column_stack([d[:, 0] ** 2, d[:, 1] ** 2, d[:, 0] * d[:, 1]]))
    exact = np.array([COV[0, 0], COV[1, 1], COV[0, 1]])
    assert np.all(np.abs(cov - exact) < 4 * cov_err), (cov, exact, cov_err)
    # the unreweighted proposal's variance is visibly wrong: the correction is doing the work
    assert abs(q.sample(20000, seed=6)[:, 0].var() - COV[0, 0]) > 10 * cov_err[0]
    assert abs(res.logZ - EXACT) < 4 * res.logZ_err  # log ∫ p̃ over the box
    assert 0.3 < res.ess_fraction < 0.95
    x = res.resample(20000, seed=7)
    np.testing.assert_allclose(x.var(axis=0), np.diag(COV), rtol=0.1)


def test_reweight_errors_are_the_scatter_over_repeats(kde):
    """The reported error of a reweighted expectation matches its spread over 25 repeats, and a proposal
    equal to the target has ESS fraction ~1."""
    runs = [mf.reweight(kde, _log_like, n=2000, seed=s, progress=False) for s in range(25)]
    means = np.array([r.expect(lambda t: t[:, 0])[0] for r in runs])
    errs = np.array([r.expect(lambda t: t[:, 0])[1] for r in runs])
    assert 0.6 < means.std() / errs.mean() < 1.5
    assert abs(means.mean() - MEAN[0]) < 3 * errs.mean() / np.sqrt(25)
    ident = mf.reweight(kde, kde.log_prob, n=2000, seed=1, progress=False)
    np.testing.assert_allclose(ident.ess_fraction, 1.0, rtol=1e-9)
    np.testing.assert_allclose(ident.logZ, 0.0, atol=1e-9)
    with pytest.raises(ValueError, match="must return"):
        ident.expect(lambda t: t[:5, 0])
