"""Shared fixtures: small trained estimators over every kind of bounds.

``ESTIMATOR_CASES`` is the list the property suite (test_properties.py) runs
over; every new estimator adds its cases here.
"""

import numpy as np
import pytest

import margflow as mf

INF = np.inf


def _box_samples(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.beta(2.0, 5.0, n)  # in [0, 1], piles up near 0
    b = -2 + 5 * rng.beta(4.0, 2.0, n) * (0.5 + 0.5 * a)  # in [-2, 3], correlated with a
    return np.column_stack([a, b]), np.array([[0.0, 1.0], [-2.0, 3.0]])


def _mixed_samples(n=3000, seed=1):
    rng = np.random.default_rng(seed)
    a = -1 + 3 * rng.beta(1.5, 1.5, n)  # two-sided [-1, 2]
    b = 0.5 + rng.gamma(2.0, 0.5, n) * (1 + 0.3 * a)  # lower bound 0.5
    c = 3.0 - rng.gamma(1.5, 1.0, n)  # upper bound 3
    return np.column_stack([a, b, c]), np.array([[-1.0, 2.0], [0.5, INF], [-INF, 3.0]])


def _unbounded_samples(n=3000, seed=2):
    rng = np.random.default_rng(seed)
    a1 = rng.normal(1, np.sqrt(0.5), n)
    return np.column_stack([a1, rng.normal(0.3 * a1**2, 0.5)]), np.array([[-INF, INF], [-INF, INF]])


SMALL = {"n_layers": 3, "hidden": (32, 32)}
FIT = {"epochs": 40, "patience": 10, "progress": False}


def _trained(cls, sample_fn, transform="probit", **kw):
    """A case: ``cls`` on weighted samples, trained briefly."""

    def make():
        x, bounds = sample_fn()
        w = np.random.default_rng(5).uniform(0.2, 1.0, len(x))
        est = cls(x, bounds=bounds, weights=w, transform=transform, seed=3, **SMALL, **kw)
        est.fit(**FIT)
        return est

    return make


def _kde(sample_fn, transform="probit"):
    def make():
        x, bounds = sample_fn()
        w = np.random.default_rng(5).uniform(0.2, 1.0, len(x))
        return mf.KDE(x, bounds=bounds, weights=w, transform=transform, seed=3)

    return make


def _heavy_samples(n=3000, seed=6):
    """A bivariate Student-t (ν = 3), open on every side: a case for the Student-t base."""
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(n, 2)) @ np.array([[2.0, 0.0], [2.4, 1.8]]).T
    return 1.0 + g / np.sqrt(rng.chisquare(3.0, n) / 3.0)[:, None], np.array([[-INF, INF], [-INF, INF]])


def _two_mode_samples(n=3000, seed=4):
    """Two separated modes in a box with one open side: a case for the piecewise mixture."""
    rng = np.random.default_rng(seed)
    m = rng.uniform(size=n) < 0.35
    a = np.where(m, rng.normal(-2.0, 0.4, n), rng.normal(1.5, 0.5, n))
    b = np.where(m, 2.5 + rng.gamma(3.0, 0.3, n), 2.5 + rng.gamma(6.0, 0.4, n))
    x = np.column_stack([np.clip(a, -4.99, 4.99), b])
    return x, np.array([[-5.0, 5.0], [2.5, INF]])


ESTIMATOR_CASES = {
    "ensemble-realnvp-mixed-logit": _trained(mf.Ensemble, _mixed_samples, "logit", estimator="RealNVP", n_members=2),
    "piecewise-two-modes": _trained(mf.PiecewiseMAF, _two_mode_samples, n_clusters=2),
    "kde-unbounded": _kde(_unbounded_samples),
    "kde-box-probit": _kde(_box_samples),
    "kde-mixed-logit": _kde(_mixed_samples, "logit"),
    "maf-unbounded": _trained(mf.MAF, _unbounded_samples),
    "maf-box-probit": _trained(mf.MAF, _box_samples),
    "maf-mixed-logit": _trained(mf.MAF, _mixed_samples, "logit"),
    "maf-student_t-heavy": _trained(mf.MAF, _heavy_samples, base="student_t"),
    "realnvp-box-probit": _trained(mf.RealNVP, _box_samples),
    "realnvp-mixed-logit": _trained(mf.RealNVP, _mixed_samples, "logit"),
    "spline-box-probit": _trained(mf.SplineFlow, _box_samples, n_bins=6),
    "spline-mixed-logit": _trained(mf.SplineFlow, _mixed_samples, "logit", n_bins=6),
    "spline-student_t-mixed-logit": _trained(mf.SplineFlow, _mixed_samples, "logit", n_bins=6, base="student_t"),
}

_cache = {}


@pytest.fixture(params=sorted(ESTIMATOR_CASES), scope="session")
def estimator(request):
    """Each trained estimator case, built once per session."""
    if request.param not in _cache:
        _cache[request.param] = ESTIMATOR_CASES[request.param]()
    return _cache[request.param]


@pytest.fixture(scope="session")
def box_data():
    return _box_samples()


@pytest.fixture(scope="session")
def unbounded_data():
    return _unbounded_samples()


def seeded(seed, generator, *args):
    """Call one of anesthetic's ``perfect_ns`` generators reproducibly (they draw from numpy's
    global random state, so that state is what must be seeded)."""
    np.random.seed(seed)  # noqa: NPY002
    return generator(*args)
