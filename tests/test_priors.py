"""FlowPrior (pocoMC's prior interface), the emcee helpers, and estimators as nested-sampling transforms."""

import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import multivariate_normal

import margflow as mf


def _gauss_kde(n=4000, sd=0.3, bounds=((-3, 3), (-3, 3)), seed=0):
    x = np.random.default_rng(seed).normal(0.0, sd, size=(n, 2))
    return mf.KDE(x, bounds=np.array(bounds, float), seed=seed)


@pytest.fixture(scope="module")
def maf():
    x = np.random.default_rng(1).normal(0.0, 0.3, size=(3000, 2))
    flow = mf.MAF(x, bounds=[[-3, 3], [-3, 3]], n_layers=2, hidden=(16, 16), seed=0)
    flow.fit(epochs=30, patience=10, progress=False)
    return flow


def test_interface(maf):
    prior = mf.FlowPrior(maf)
    assert prior.dim == 2 and prior.params == maf.params
    assert prior.bounds.dtype == np.float64 and prior.bounds.shape == (2, 2)
    np.testing.assert_array_equal(prior.bounds, maf.bounds)
    empty = prior.logpdf(np.zeros((0, 2)))
    assert empty.shape == (0,) and empty.dtype == np.float64
    x = prior.rvs(300, random_state=4)
    assert x.shape == (300, 2) and x.dtype == np.float64
    assert np.all((x >= prior.bounds[:, 0]) & (x <= prior.bounds[:, 1]))
    np.testing.assert_array_equal(x, prior.rvs(300, random_state=4))
    lp = prior.logpdf(x)
    assert lp.shape == (300,) and lp.dtype == np.float64 and np.all(np.isfinite(lp))
    np.testing.assert_array_equal(lp, maf.log_prob(x))
    assert isinstance(prior.logpdf(x[0]), float)
    assert prior.logpdf([[3.5, 0.0]])[0] == -np.inf
    # numpy's global generator seeds rvs without random_state (pocoMC's random_state sets it)
    np.random.seed(7)  # noqa: NPY002 (the generator pocoMC seeds)
    a = prior.rvs(5)
    np.random.seed(7)  # noqa: NPY002 (the generator pocoMC seeds)
    np.testing.assert_array_equal(a, prior.rvs(5))
    again = pickle.loads(pickle.dumps(prior))
    np.testing.assert_allclose(again.logpdf(x), lp, rtol=1e-12)


def test_draws_never_lie_on_a_bound():
    """A density piled against a bound: some estimator draws round onto it; the prior's draws are
    strictly inside (pocoMC's probit map sends a bound to infinity)."""
    rng = np.random.default_rng(6)
    # a density diverging at -3: x = -3 + 13 u rounds to -3 itself for u below ~1e-17
    x = np.column_stack([-3 + 13 * rng.beta(0.2, 1.0, 4000), rng.normal(0, 1, 4000)])
    kde = mf.KDE(x, bounds=[[-3.0, 10.0], [-6.0, 6.0]], blend=0)
    prior = mf.FlowPrior(kde)
    got = prior.rvs(200_000, random_state=0)
    draws = kde.sample(200_000, seed=int(np.random.default_rng(0).integers(2**31)))  # the same draws, unmoved
    on_bound = draws[:, 0] == -3.0
    assert on_bound.any()  # the case this test is about
    assert np.all(got[:, 0] > -3.0) and np.all(got[:, 0] < 10.0)
    np.testing.assert_array_equal(got[~on_bound], draws[~on_bound])  # nothing else moves
    assert np.all(np.isfinite(prior.logpdf(got)))


def test_truncated_prior_is_normalised():
    """A box narrower than the estimator's support: the density is renormalised by the mass inside,
    so it integrates to one over the box (uniform Monte Carlo, within its error and the mass's)."""
    kde = _gauss_kde(sd=1.0, bounds=((-6, 6), (-6, 6)))
    box = [[0.0, 6.0], [-1.0, 6.0]]
    prior = mf.FlowPrior(kde, bounds=box, n_mass=100_000, seed=1)
    # mass of the KDE inside the box: close to the Gaussian's 0.5 × Φ(1)
    assert 0 < prior.mass < 1 and prior.log_mass_err > 0
    np.testing.assert_array_equal(prior.bounds, box)
    u = np.random.default_rng(2).uniform(size=(400_000, 2))
    lo, hi = np.array(box).T
    x = lo + u * (hi - lo)
    vals = np.exp(prior.logpdf(x)) * np.prod(hi - lo)
    integral, err = vals.mean(), vals.std() / np.sqrt(len(vals))
    tol = 4 * np.hypot(err, prior.log_mass_err)
    assert abs(integral - 1) < tol, (integral, err, prior.log_mass_err)
    draws = prior.rvs(2000, random_state=3)
    assert np.all((draws >= np.array(box)[:, 0]) & (draws <= np.array(box)[:, 1]))
    assert prior.logpdf([[-0.5, 0.0]])[0] == -np.inf
    with pytest.raises(ValueError, match="no exact unit-hypercube transform"):
        prior.transform([0.5, 0.5])


def test_flow_prior_errors(maf):
    with pytest.raises(TypeError, match="margflow estimator"):
        mf.FlowPrior(lambda x: x)
    with pytest.raises(ValueError, match="does not overlap"):
        mf.FlowPrior(maf, bounds=[[4, 5], [-1, 1]])
    with pytest.raises(ValueError, match="too small"):
        mf.FlowPrior(maf, bounds=[[2.9, 3.0], [2.9, 3.0]], n_mass=10_000)
    with pytest.raises(ValueError, match="shape"):
        mf.FlowPrior(maf).logpdf(np.zeros((3, 5)))


def test_log_posterior():
    kde = _gauss_kde()
    prior = mf.FlowPrior(kde)
    like = multivariate_normal([0.2, 0.2], 0.04 * np.eye(2)).logpdf
    post = mf.LogPosterior(prior, like)
    x = np.array([[0.1, 0.1], [5.0, 0.0]])
    got = post(x)
    assert got[1] == -np.inf
    np.testing.assert_allclose(got[0], prior.logpdf(x[:1])[0] + like(x[0]))
    assert isinstance(post(x[0]), float)
    one_by_one = mf.LogPosterior(prior, like, vectorized=False)
    np.testing.assert_allclose(one_by_one(x), got)
    with pytest.raises(FloatingPointError, match="NaN at 1 points"):
        mf.LogPosterior(prior, lambda t: np.full(len(t), np.nan))(x)
    with pytest.raises(TypeError, match="logpdf"):
        mf.LogPosterior(kde, like)


def _importance_mean(prior, like, n=200_000, seed=0):
    """E_post[θ] and its standard error by importance sampling from the prior itself."""
    x = prior.rvs(n, random_state=seed)
    logw = like(x)
    w = np.exp(logw - logw.max())
    w /= w.sum()
    m = w @ x
    return m, np.sqrt(np.sum(w[:, None] ** 2 * (x - m) ** 2, axis=0))


@pytest.mark.slow
def test_emcee_sampler_matches_importance_sampling():
    emcee = pytest.importorskip("emcee")
    prior = mf.FlowPrior(_gauss_kde())
    like = multivariate_normal([0.2, 0.2], 0.04 * np.eye(2)).logpdf
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # unimodal: no mode warning
        sampler, p0 = mf.emcee_sampler(prior, like, nwalkers=32, seed=1)
    assert isinstance(sampler, emcee.EnsembleSampler) and p0.shape == (32, 2)
    sampler.run_mcmc(p0, 1500, progress=False)
    tau = float(np.max(sampler.get_autocorr_time(tol=0)))
    chain = sampler.get_chain(discard=300, flat=True)
    n_eff = len(chain) / tau
    exact, exact_err = _importance_mean(prior, like)
    err = np.hypot(chain.std(0) / np.sqrt(n_eff), exact_err)
    assert np.all(np.abs(chain.mean(0) - exact) < 4 * err), (chain.mean(0), exact, err)


def test_separated_modes_and_emcee_warning():
    pytest.importorskip("emcee")
    rng = np.random.default_rng(3)
    two = np.concatenate([rng.normal(3, 0.5, (2000, 2)), rng.normal(-3, 0.5, (1000, 2))])
    prior = mf.FlowPrior(mf.KDE(two, bounds=[[-6, 6], [-6, 6]]))
    modes = mf.separated_modes(prior, seed=0)
    assert len(modes) == 2
    # the draws' split is binomial around the mixture weights 2/3, 1/3
    assert abs(modes[0]["weight"] - 2 / 3) < 4 * np.sqrt(2 / 9 / 3000)
    np.testing.assert_allclose(modes[0]["mean"], [3, 3], atol=0.1)
    with pytest.warns(UserWarning, match="2 separated modes"):
        mf.emcee_sampler(prior, lambda x: np.zeros(len(x)), seed=0)
    # a thin curved banana is one mode
    a1 = rng.normal(1, np.sqrt(0.5), 4000)
    banana = np.column_stack([a1, rng.normal(a1**2, np.sqrt(1 / 40), 4000)])
    assert len(mf.separated_modes(mf.KDE(banana), seed=0)) == 1


def test_transform_is_a_nested_sampling_prior_transform(maf):
    """One (d,) point in gives one (d,) point out, as dynesty and UltraNest call it."""
    u = np.array([0.3, 0.8])
    got = maf.transform(u)
    assert got.shape == (2,)
    np.testing.assert_allclose(got, maf.transform(u[None])[0], rtol=1e-6)
    np.testing.assert_array_equal(mf.FlowPrior(maf).transform(u), got)


@pytest.mark.slow
def test_dynesty_with_estimator_transform():
    """dynesty with a fitted estimator's transform as its prior: log Z = log E_prior[L], checked
    against importance sampling from the same estimator (both within their reported errors)."""
    dynesty = pytest.importorskip("dynesty")
    kde = _gauss_kde()
    like = multivariate_normal([0.2, 0.2], 0.04 * np.eye(2)).logpdf
    sampler = dynesty.NestedSampler(like, kde.transform, 2, nlive=300, rstate=np.random.default_rng(0))
    sampler.run_nested(dlogz=0.05, print_progress=False)
    res = sampler.results
    logz, logz_err = res.logz[-1], res.logzerr[-1]
    is_logz, is_err = _prior_evidence(kde, like)
    assert abs(logz - is_logz) < 3 * np.hypot(logz_err, is_err), (logz, logz_err, is_logz, is_err)


def _prior_evidence(estimator, like, n=200_000, seed=1):
    """log E_q[L] by simple Monte Carlo from the estimator, and its error."""
    lw = like(estimator.sample(n, seed=seed))
    top = lw.max()
    w = np.exp(lw - top)
    return top + np.log(w.mean()), w.std() / w.mean() / np.sqrt(n)


@pytest.mark.slow
def test_ultranest_with_estimator_transform():
    """UltraNest, vectorised, with an estimator's transform as its prior transform."""
    ultranest = pytest.importorskip("ultranest")
    kde = _gauss_kde()
    like = multivariate_normal([0.2, 0.2], 0.04 * np.eye(2)).logpdf
    sampler = ultranest.ReactiveNestedSampler(["a", "b"], like, kde.transform, vectorized=True)
    res = sampler.run(min_num_live_points=300, show_status=False, viz_callback=False)
    ref, ref_err = _prior_evidence(kde, like)
    assert abs(res["logz"] - ref) < 3 * np.hypot(res["logzerr"], ref_err), (res["logz"], res["logzerr"], ref)


@pytest.mark.slow
@pytest.mark.parametrize("order", ["margflow first", "pocomc first"])
def test_margflow_and_pocomc_in_one_process(order):
    """TensorFlow and torch together, in either import order: pocoMC trains its own flow on a
    margflow prior in a fresh process, which must finish cleanly (no LLVM abort) with a sane answer."""
    pytest.importorskip("pocomc")
    imports = (
        "import margflow as mf\nimport pocomc" if order == "margflow first" else "import pocomc\nimport margflow as mf"
    )
    script = textwrap.dedent(
        """
        {imports}
        import numpy as np
        from scipy.stats import multivariate_normal
        x = np.random.default_rng(0).normal(0.0, 0.3, size=(3000, 2))
        prior = mf.FlowPrior(mf.KDE(x, bounds=[[-3, 3], [-3, 3]]))
        like = multivariate_normal([0.2, 0.2], 0.04 * np.eye(2)).logpdf
        s = pocomc.Sampler(prior=prior, likelihood=like, vectorize=True, n_effective=256, n_active=128,
                           random_state=0)
        s.run(n_total=512, n_evidence=512, progress=False)
        x, w, _, _ = s.posterior()
        w = w / w.sum()
        m = w @ x
        err = np.sqrt(w @ (x - m) ** 2 * np.sum(w**2))
        # the same posterior mean by importance sampling from the prior
        y = prior.rvs(100_000, random_state=1)
        v = np.exp(like(y) - like(y).max())
        v /= v.sum()
        ref = v @ y
        ref_err = np.sqrt(np.sum(v[:, None] ** 2 * (y - ref) ** 2, axis=0))
        print("Z", *((m - ref) / np.hypot(err, ref_err)))
        """
    ).format(imports=imports)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    z = np.array(out.stdout.split("Z")[-1].split(), float)
    assert np.all(np.abs(z) < 4), z


def test_torch_guard_imports_dynamo_first_when_triton_is_installed(tmp_path):
    """With triton importable (a CUDA torch build), margflow's guard loads torch._dynamo while TensorFlow
    is not yet loaded; with TensorFlow already loaded it warns instead. There is no CUDA build here:
    stub triton and torch packages stand in, the stub torch._dynamo records whether TensorFlow came
    first, and the guard module is loaded on its own (a stub torch would confuse TensorFlow's imports)."""
    (tmp_path / "triton").mkdir()
    (tmp_path / "triton" / "__init__.py").write_text("")
    (tmp_path / "torch" / "_dynamo").mkdir(parents=True)
    (tmp_path / "torch" / "__init__.py").write_text("")
    (tmp_path / "torch" / "_dynamo" / "__init__.py").write_text("import sys\nTF_FIRST = 'tensorflow' in sys.modules\n")
    guard = Path(mf.__file__).with_name("_torch.py")
    check = textwrap.dedent(
        """
        import importlib.util, sys, types, warnings
        sys.path.insert(0, {path!r})
        {pre}
        spec = importlib.util.spec_from_file_location("guard", {guard!r})
        guard = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(guard)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            guard.prepare()
        dynamo = sys.modules.get("torch._dynamo")
        print("DYNAMO", dynamo is not None)
        print("TF_FIRST", getattr(dynamo, "TF_FIRST", None))
        print("WARNED", any("LLVM" in str(w.message) for w in caught))
        """
    )

    def run(pre):
        code = check.format(path=str(tmp_path), pre=pre, guard=str(guard))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout

    first = run("")
    assert "DYNAMO True" in first and "TF_FIRST False" in first and "WARNED False" in first, first
    late = run("sys.modules['tensorflow'] = types.ModuleType('tensorflow')")
    assert "DYNAMO False" in late and "WARNED True" in late, late


def _real_triton():
    import importlib.util

    spec = importlib.util.find_spec("triton")
    return spec is not None and spec.origin is not None and Path(spec.origin).parent.joinpath("_C").is_dir()


@pytest.mark.slow
def test_tensorflow_first_with_real_triton_is_refused_not_aborted():
    """With the real triton installed (the LLVM a CUDA torch build ships; its wheel installs on CPU
    machines too). Control: TensorFlow then ``torch._dynamo`` aborts the process here, so the
    in-one-process test above is a real check of margflow's import order. With TensorFlow imported
    first, margflow warns at import and ``mf.sequential`` raises a clear error instead of letting
    pocoMC's flow training abort the process (a notebook kernel would die)."""
    if not _real_triton():
        pytest.skip("triton is not installed (the test extra installs it on Linux x86-64)")
    pytest.importorskip("pocomc")

    def run(code):
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
        )

    control = run("import tensorflow\nimport torch._dynamo\nprint('survived')")
    if control.returncode == 0:
        pytest.skip("this triton and this TensorFlow load side by side: nothing to guard against")
    assert "registered more than once" in control.stderr, control.stderr[-2000:]
    out = run(
        """
        import warnings
        import numpy as np
        import tensorflow
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import margflow as mf
        print("WARNED", any("registered more than once" in str(w.message) for w in caught))
        x = np.random.default_rng(0).normal(0.0, 0.3, size=(500, 2))
        try:
            mf.sequential(x, lambda t: -np.sum(t**2, 1), bounds=[[-3, 3], [-3, 3]], progress=False)
        except RuntimeError as exc:
            print("REFUSED", exc)
        """
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "WARNED True" in out.stdout, out.stdout
    assert "REFUSED" in out.stdout and "Restart the Python process" in out.stdout, out.stdout


def test_torch_guard_runs_before_tensorflow_is_imported():
    """margflow's __init__ calls the guard before any module that imports TensorFlow."""
    import ast

    tree = ast.parse(Path(mf.__file__).read_text())
    order = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("margflow."):
            order.append(node.module)
        elif isinstance(node, ast.Expr) and "prepare" in ast.unparse(node):
            order.append("prepare")
    light = {"margflow._version"}
    first_heavy = next(i for i, m in enumerate(order) if m != "prepare" and m not in light)
    assert order.index("prepare") < first_heavy, order
