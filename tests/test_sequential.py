"""mf.sequential: A's fitted posterior as B's prior in pocoMC, against the conjugate Gaussian answer."""

import json
import multiprocessing
import os
import pickle
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import multivariate_normal, norm

import margflow as mf

pytest.importorskip("pocomc")

SD_A, MU_B, SD_B = 0.3, 0.2, 0.2
PREC = 1 / SD_A**2 + 1 / SD_B**2
POST_MEAN, POST_SD = MU_B / SD_B**2 / PREC, PREC**-0.5
LOGZ_B_GIVEN_A = 2 * norm(0, np.hypot(SD_A, SD_B)).logpdf(MU_B)  # ∫ N(θ; 0, A) N(μ_B; θ, B) dθ, 2 dims
LOGZ_A = -2 * np.log(6.0)  # A: uniform prior on [-3, 3]², a measurement 0 of each θ with sd SD_A
N_A = 4000
SMALL_POCO = {"n_effective": 256, "n_active": 128, "n_total": 1024, "n_evidence": 2048}

like_b = multivariate_normal([MU_B, MU_B], SD_B**2 * np.eye(2)).logpdf


@pytest.fixture(scope="module")
def chain_a():
    return np.random.default_rng(0).normal(0.0, SD_A, size=(N_A, 2))


def like_joint(theta):
    """A's likelihood (a measurement 0 of each θ with sd SD_A, in the box prior) plus B's."""
    return multivariate_normal([0, 0], SD_A**2 * np.eye(2)).logpdf(theta) + like_b(theta)


@pytest.fixture(scope="module")
def result(chain_a):
    from pocomc import Prior
    from scipy.stats import uniform

    fit = {"epochs": 200, "patience": 20}
    return mf.sequential(
        chain_a,
        like_b,
        bounds=[[-3, 3], [-3, 3]],
        logZ_a=LOGZ_A,
        logZ_a_err=0.01,
        fit_kwargs={**fit, "progress": False},
        ensemble=6,
        joint=(Prior([uniform(-3, 6)] * 2), like_joint),
        progress=False,
        seed=2,
        **SMALL_POCO,
    )


@pytest.mark.slow
def test_sequential_matches_the_conjugate_answer(result):
    assert result.estimator_err > 0 and result.logZ_B_given_A_err >= result.sampler_err
    z = (result.logZ_B_given_A - LOGZ_B_GIVEN_A) / result.logZ_B_given_A_err
    assert abs(z) < 3, (result, LOGZ_B_GIVEN_A)
    assert result.logZ_AB == pytest.approx(LOGZ_A + result.logZ_B_given_A)
    assert result.logZ_AB_err == pytest.approx(np.hypot(result.logZ_B_given_A_err, 0.01))
    # the mean: sampling error and what chain A's own scatter moves it by (prior weight × its error)
    err = np.hypot(POST_SD / np.sqrt(result.ess), (1 / SD_A**2) / PREC * SD_A / np.sqrt(N_A))
    assert np.all(np.abs(result.mean() - POST_MEAN) < 4 * err), (result.mean(), POST_MEAN, err)
    # weighted std: its sampling error is ~ sd / sqrt(2 ESS)
    assert np.all(np.abs(result.std() - POST_SD) < 4 * POST_SD / np.sqrt(2 * result.ess))
    assert np.isclose(result.weights.sum(), 1.0) and len(result.weights) == len(result.samples)


@pytest.mark.slow
def test_joint_comparison(result):
    """The one-shot joint run agrees with the sequential one within their errors."""
    c, j = result.comparison, result.joint
    ess_j = 1 / np.sum(j["weights"] ** 2)
    # two Monte Carlo posteriors and chain A's scatter (prior weight × its error), in posterior σ
    err = np.sqrt(1 / result.ess + 1 / ess_j + ((1 / SD_A**2) / PREC * SD_A / np.sqrt(N_A) / POST_SD) ** 2)
    assert np.all(np.abs(c["mean_shift"]) < 4 * err), (c, err)
    assert np.all(np.abs(c["std_shift"]) < 4 * np.sqrt(0.5 / result.ess + 0.5 / ess_j)), c
    assert abs(c["logZ_z"]) < 4 and c["kl"] >= 0 and c["kl_outside"] == 0
    # the joint evidence, exact
    assert abs(j["logZ"] - (LOGZ_A + LOGZ_B_GIVEN_A)) < 4 * j["logZ_err"]


@pytest.mark.slow
def test_information_limit_and_round_trips(result, chain_a):
    sigma, ess_b, n = mf.information_limit(like_b, chain_a)
    assert result.sigma_info == pytest.approx(sigma) and n == pytest.approx(N_A)
    assert 0 < ess_b < N_A
    # a flat likelihood teaches nothing new: no limit
    assert mf.information_limit(lambda x: np.zeros(len(x)), chain_a)[0] == 0.0
    again = pickle.loads(pickle.dumps(result))
    assert again.sampler is None and again.logZ_B_given_A == result.logZ_B_given_A
    frame = result.to_anesthetic()
    np.testing.assert_allclose(frame.mean()[result.params].to_numpy(), result.mean(), rtol=1e-10)
    assert "SequentialResult" in repr(result)


def test_compare():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, (20000, 2))
    b = rng.normal([0.5, 0], [1, 2], (20000, 2))
    same = mf.compare((a, None), a)
    np.testing.assert_allclose(same["mean_shift"], 0, atol=1e-12)
    assert same["gaussian_kl"] == pytest.approx(0, abs=1e-12)
    got = mf.compare((b, np.ones(len(b))), a)
    np.testing.assert_allclose(got["mean_shift"], [0.5, 0], atol=0.03)
    np.testing.assert_allclose(got["std_ratio"], [1, 2], rtol=0.03)
    # KL(N(0, I) ‖ N((0.5, 0), diag(1, 4)))
    exact = 0.5 * (1 + 0.25 + 0.25 - 2 + np.log(4))
    assert got["gaussian_kl"] == pytest.approx(exact, rel=0.05)
    assert got["histogram_kl"] > 10 * same["histogram_kl"] + 0.01
    with pytest.raises(ValueError, match="parameters"):
        mf.compare((a, None), a[:, :1])


@pytest.mark.slow
def test_sequential_with_a_process_pool(chain_a):
    """pocoMC's pool passed through: a 2-process spawn pool evaluates B's likelihood, here a margflow
    NuisanceFreeLikelihood (TensorFlow in the workers; the estimator travels as its model file)."""
    xb = np.random.default_rng(5).normal(MU_B, SD_B, size=(3000, 2))
    like = mf.NuisanceFreeLikelihood(mf.KDE(xb, bounds=[[-3, 3], [-3, 3]]), logZ=0.0)
    prior_a = mf.KDE(chain_a, bounds=[[-3, 3], [-3, 3]])
    kwargs = dict(ensemble=0, information=False, progress=False, seed=4, **SMALL_POCO)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        pooled = mf.sequential(prior_a, like, vectorized=False, pool=pool, **kwargs)
    serial = mf.sequential(prior_a, like, **kwargs)
    diff = pooled.logZ_B_given_A - serial.logZ_B_given_A
    assert abs(diff) < 4 * np.hypot(pooled.sampler_err, serial.sampler_err), (pooled, serial)
    assert pooled.estimator_err == 0 and pooled.sigma_info is None


def test_sequential_reuses_given_refits(chain_a):
    """``ensemble`` as refits made before gives the same estimator error as making them inside;
    refits over other parameters are refused before pocoMC runs."""
    box = [[-3, 3], [-3, 3]]
    kde = mf.KDE(chain_a, bounds=box)
    kwargs = dict(information=False, progress=False, seed=7, **SMALL_POCO)
    made = mf.sequential(kde, like_b, ensemble=3, **kwargs)
    given = mf.sequential(kde, like_b, ensemble=kde.bootstrap(3, seed=7, progress=False), **kwargs)
    assert len(given.ensemble_logZ) == 3 and given.estimator_err > 0
    np.testing.assert_allclose(given.ensemble_logZ, made.ensemble_logZ, rtol=0, atol=1e-9)
    other = mf.KDE(chain_a, params=["a", "b"], bounds=box)
    with pytest.raises(ValueError, match="ensemble member parameters"):
        mf.sequential(kde, like_b, ensemble=[other], **kwargs)
    with pytest.raises(ValueError, match="ensemble must be"):
        mf.sequential(kde, like_b, ensemble=-1, **kwargs)


@pytest.mark.slow
def test_sequential_with_an_mpi_pool(tmp_path):
    """An mpi4py.futures.MPIPoolExecutor as pocoMC's pool, the way a cluster job runs it:
    ``mpiexec -n 3 python -m mpi4py.futures tests/mpi_sequential.py``; two MPI workers evaluate
    B's likelihood. The pooled answer agrees with the serial one within errors."""
    pytest.importorskip("mpi4py")
    # MPICH's wheel puts mpiexec beside the interpreter, which a venv need not have on PATH
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip("no mpiexec: pip install mpich (or load the site's MPI)")
    out = tmp_path / "mpi.json"
    script = Path(__file__).with_name("mpi_sequential.py")
    cmd = [mpiexec, "-n", "3", sys.executable, "-m", "mpi4py.futures", str(script), str(out)]
    run = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    )
    assert run.returncode == 0, run.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["world_size"] == 3 and res["workers"] == 2 and res["through_pool"]
    (zp, ep), (zs, es) = res["pooled"], res["serial"]
    assert abs(zp - zs) < 4 * np.hypot(ep, es), res
    # posterior means: each with its Monte Carlo error sd / √ESS
    se = np.hypot(*(np.array(res[f"{k}_sd"]) / np.sqrt(res[f"{k}_ess"]) for k in ("pooled", "serial")))
    assert np.all(np.abs(np.subtract(res["pooled_mean"], res["serial_mean"])) < 4 * se), res
