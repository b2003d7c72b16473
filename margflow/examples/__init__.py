"""An example nested-sampling run that ships with margflow.

:func:`load_example` returns anesthetic ``NestedSamples`` over two parameters
of interest, ``Omega_m`` and ``sigma8``, and three nuisance parameters,
``A_IA``, ``b1`` and ``m_cal``, drawn by a perfect nested sampler from a
correlated Gaussian likelihood in a uniform prior box (:data:`BOUNDS`). The
exact marginal posterior of the core parameters is Gaussian with mean
``MEAN[:2]`` and covariance ``COV[:2, :2]`` (the box truncates it negligibly).
"""

import os

import numpy as np

__all__ = ["load_example", "PARAMS", "CORE", "BOUNDS", "MEAN", "COV", "LABELS"]

PARAMS = ["Omega_m", "sigma8", "A_IA", "b1", "m_cal"]
CORE = ["Omega_m", "sigma8"]
LABELS = {
    "Omega_m": r"$\Omega_\mathrm{m}$",
    "sigma8": r"$\sigma_8$",
    "A_IA": r"$A_\mathrm{IA}$",
    "b1": r"$b_1$",
    "m_cal": r"$m_\mathrm{cal}$",
}
BOUNDS = {"Omega_m": (0.1, 0.6), "sigma8": (0.5, 1.1), "A_IA": (-3.0, 3.0), "b1": (0.5, 3.0), "m_cal": (-0.1, 0.1)}
MEAN = np.array([0.31, 0.80, 0.5, 1.6, 0.0])
_SD = np.array([0.03, 0.04, 0.6, 0.3, 0.02])
_CORR = np.array(
    [
        [1.0, -0.8, 0.2, 0.1, 0.0],
        [-0.8, 1.0, -0.3, -0.4, 0.3],
        [0.2, -0.3, 1.0, 0.2, 0.0],
        [0.1, -0.4, 0.2, 1.0, -0.2],
        [0.0, 0.3, 0.0, -0.2, 1.0],
    ]
)
COV = _CORR * np.outer(_SD, _SD)
_FILE = os.path.join(os.path.dirname(__file__), "example_ns.csv.gz")


def load_example():
    """The example run as anesthetic ``NestedSamples``.

    Returns
    -------
    samples : anesthetic.NestedSamples
        Columns ``PARAMS`` (with TeX labels), ``logL``, ``logL_birth``, ``nlive``.
    bounds : dict
        The uniform prior box, by parameter name.

    Examples
    --------
    >>> samples, bounds = load_example()
    >>> sorted(bounds) == sorted(PARAMS)
    True
    """
    from anesthetic import NestedSamples

    data = np.loadtxt(_FILE, delimiter=",", skiprows=1)
    d = len(PARAMS)
    samples = NestedSamples(
        data=data[:, :d],
        columns=PARAMS,
        logL=data[:, d],
        logL_birth=data[:, d + 1],
        labels=[LABELS[p] for p in PARAMS],
    )
    return samples, dict(BOUNDS)
