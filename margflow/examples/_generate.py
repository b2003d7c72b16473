"""Regenerate ``example_ns.csv.gz`` (run once; the file ships with margflow).

A perfect nested-sampling run (anesthetic.examples.perfect_ns) of a correlated
Gaussian likelihood in five parameters, two of interest and three nuisance,
under a uniform prior box. The exact marginal of the core parameters is the
Gaussian with the core block of the covariance, so the demo can be checked.

    python -m margflow.examples._generate
"""

import os

import numpy as np

from margflow.examples import BOUNDS, COV, MEAN, PARAMS


def main():
    from anesthetic.examples.perfect_ns import correlated_gaussian

    np.random.seed(20261122)  # noqa: NPY002 (anesthetic draws from the global generator)
    samples = correlated_gaussian(500, MEAN, COV, bounds=np.array([BOUNDS[p] for p in PARAMS]))
    theta = samples.to_numpy()[:, : len(PARAMS)]
    out = np.column_stack([theta, samples["logL"].to_numpy(), samples["logL_birth"].to_numpy()])
    path = os.path.join(os.path.dirname(__file__), "example_ns.csv.gz")
    np.savetxt(path, out, delimiter=",", header=",".join(PARAMS + ["logL", "logL_birth"]), comments="", fmt="%.10g")
    print(f"wrote {len(out)} samples to {path}; logZ = {samples.logZ():.4f}")


if __name__ == "__main__":
    main()
