"""The sequential loop with an MPI pool; run by tests/test_sequential.py as

    mpiexec -n 3 python -m mpi4py.futures tests/mpi_sequential.py OUT.json

Rank 0 runs this script; ranks 1 and 2 are mpi4py.futures workers that evaluate B's likelihood (a
frozen scipy Gaussian: the workers need no TensorFlow; test_sequential_with_a_process_pool covers a
margflow likelihood in workers). The same run without a pool follows, and both answers go to
OUT.json for the test to compare.
"""

import json
import sys


def main(out):
    import numpy as np
    from mpi4py import MPI
    from mpi4py.futures import MPIPoolExecutor
    from scipy.stats import multivariate_normal

    import margflow as mf

    box = [[-3, 3], [-3, 3]]
    chain_a = np.random.default_rng(0).normal(0.0, 0.3, size=(4000, 2))
    like = multivariate_normal([0.2, 0.2], 0.2**2 * np.eye(2)).logpdf
    prior_a = mf.KDE(chain_a, bounds=box)
    small = {"n_effective": 256, "n_active": 128, "n_total": 1024, "n_evidence": 2048}
    kwargs = dict(ensemble=0, information=False, progress=False, seed=4, **small)
    with MPIPoolExecutor() as pool:
        workers = pool.num_workers
        pooled = mf.sequential(prior_a, like, vectorized=False, pool=pool, **kwargs)
        # pocoMC maps the likelihood over the pool when it has one and is not vectorised
        through_pool = pooled.sampler.pool is pool and not pooled.sampler.vectorize
    serial = mf.sequential(prior_a, like, **kwargs)
    result = {
        "world_size": MPI.COMM_WORLD.Get_size(),
        "workers": workers,
        "through_pool": through_pool,
        "pooled": [pooled.logZ_B_given_A, pooled.sampler_err],
        "serial": [serial.logZ_B_given_A, serial.sampler_err],
    }
    for name, r in (("pooled", pooled), ("serial", serial)):
        result[f"{name}_mean"], result[f"{name}_sd"], result[f"{name}_ess"] = r.mean(), r.std(), r.ess
    with open(out, "w") as f:
        json.dump({k: np.asarray(v).tolist() for k, v in result.items()}, f)


if __name__ == "__main__":
    main(sys.argv[1])
