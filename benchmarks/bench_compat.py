"""One margarine 1.4.2 script, two imports: margarine itself against margflow.compat.margarine.

The script is margarine's own test case (tests/test_stats.py, test_clusters.py): fit
``MAF`` / ``KDE`` / ``clusterMAF`` to weighted samples, ``train(10000, early_stop=True,
patience=400)``, then ``calculate(de).statistics()``. It runs on R fresh data sets per
case (30; 10 for clusterMAF), with both packages on the same samples in one process, and is scored against the
exact D_KL and BMD of the target (relative to the box the script's prior is):

- bias and RMS error of "KL Divergence" and "BMD" over the data sets;
- coverage: how often [Lower Bound, Upper Bound] holds the exact value (margflow's is a
  68% interval; margarine's is the spread of three estimates);
- fit and statistics wall time, and NaN log_prob values on 10^4 points in and around the box.

Where the box is guessed, a third row runs margflow.compat with that guess passed as
theta_min/theta_max, so the fit is bounded by it as margarine's is: what the compat layer
avoids by keeping the guess out of the fit.

Cases: a 2-D Gaussian (margarine's N(4.2, 0.3)) with 1,000 samples and the prior box
either given ([2, 6.5]²) or left to margarine's guess from the samples (the test
suite's way; the exact values are then relative to the guessed box of each data set),
and two separated Gaussian modes (2,500 samples) for clusterMAF on a given box.

    pip install torch==2.13.0 margarine==1.4.2   # CPU torch first
    python benchmarks/bench_compat.py [--repeats 30] [--repeats-cluster 10]

Writes benchmarks/RESULTS-compat.md.
"""

import argparse
import datetime
import os
import platform
import sys
import time
import warnings

import numpy as np

import margflow  # noqa: F401  (before TensorFlow)

warnings.simplefilter("ignore")

MU, SD, N_GAUSS, N_MODES = 4.2, 0.3, 1000, 2500
BOX = np.array([[2.0, 6.5], [2.0, 6.5]])
BOX2 = np.array([[-6.0, 6.0], [-5.0, 6.0]])
SHARE = np.array([0.4, 0.6])
MEANS = [np.array([-2.0, 0.0]), np.array([2.0, 1.0])]
COVS = [0.25 * np.eye(2), np.array([[0.3, 0.1], [0.1, 0.2]])]


def gauss(n, rng):
    return rng.normal(MU, SD, size=(n, 2))


def gauss_logpdf(x):
    from scipy.stats import norm

    return norm(MU, SD).logpdf(x).sum(axis=1)


def modes(n, rng):
    k = rng.uniform(size=n) < SHARE[0]
    a = rng.multivariate_normal(MEANS[0], COVS[0], size=n)
    b = rng.multivariate_normal(MEANS[1], COVS[1], size=n)
    return np.where(k[:, None], a, b)


def modes_logpdf(x):
    from scipy.stats import multivariate_normal as mvn

    return np.logaddexp(
        np.log(SHARE[0]) + mvn(MEANS[0], COVS[0]).logpdf(x), np.log(SHARE[1]) + mvn(MEANS[1], COVS[1]).logpdf(x)
    )


def guessed_box(theta):
    """margarine 1.4.2's guess (unit weights): one expected gap beyond each extreme sample."""
    n = len(theta)
    hi, lo = theta.max(0), theta.min(0)
    return np.column_stack([((n - 2) * lo - hi) / (n - 3), ((n - 2) * hi - lo) / (n - 3)])


def exact_stats(logpdf, draw, box, rng):
    """D_KL and BMD of the target against the uniform prior on ``box``, from 10^6 exact draws."""
    f = logpdf(draw(10**6, rng)) + np.log(np.prod(box[:, 1] - box[:, 0]))
    return f.mean(), 2 * f.var()


def script(pkg, kind, theta, box):
    """The margarine user's script; ``pkg`` is the module its classes come from."""
    if box is None and getattr(pkg, "bound_by_guess", False):
        box = guessed_box(theta)  # the same box, given: the fit is bounded by it, as margarine's is
    kw = {} if box is None else {"theta_min": box[:, 0].copy(), "theta_max": box[:, 1].copy()}
    t0 = time.perf_counter()
    if kind == "KDE":
        de = pkg.KDE(theta, weights=np.ones(len(theta)), **kw)
        de.generate_kde()
    else:
        de = getattr(pkg, kind)(theta, weights=np.ones(len(theta)), **kw)
        de.train(10000, early_stop=True, patience=400)
    t1 = time.perf_counter()
    stats = pkg.calculate(de).statistics()
    t2 = time.perf_counter()
    return de, {k: float(v) for k, v in stats.items()}, t1 - t0, t2 - t1


def nan_count(de, box, rng):
    """NaN log_prob values on 10^4 uniform points of the box widened by 10% of its width at each
    side, or -1 when log_prob raised on them (margarine's KDE does, outside its box)."""
    lo, hi = box[:, 0] - 0.1 * (box[:, 1] - box[:, 0]), box[:, 1] + 0.1 * (box[:, 1] - box[:, 0])
    x = lo + (hi - lo) * rng.uniform(size=(10_000, 2))
    try:
        lp = np.asarray(de.log_prob(x.astype(np.float32) if "margarine." in type(de).__module__ else x))
    except ValueError:
        return -1
    return int(np.isnan(lp).sum())


class Packages:
    def __init__(self):
        import margarine.clustered
        import margarine.kde
        import margarine.maf
        import margarine.marginal_stats

        import margflow.compat.margarine as compat

        class Margarine:
            MAF = margarine.maf.MAF
            KDE = margarine.kde.KDE
            clusterMAF = margarine.clustered.clusterMAF
            calculate = margarine.marginal_stats.calculate

        class BoundByGuess:
            """margflow.compat with margarine's guessed box passed as theta_min/theta_max: what
            bounding the fit by the guess (margarine's way) costs margflow's estimators."""

            MAF, KDE, clusterMAF, calculate = compat.MAF, compat.KDE, compat.clusterMAF, compat.calculate
            bound_by_guess = True

        self.items = [("margarine 1.4.2", Margarine), ("margflow.compat", compat)]
        self.guess = ("margflow.compat, fit bounded by the guess", BoundByGuess)


TRUTH = "true density at the samples"

CASES = [
    ("MAF", "Gaussian, box given", gauss, gauss_logpdf, N_GAUSS, BOX),
    ("MAF", "Gaussian, box guessed", gauss, gauss_logpdf, N_GAUSS, None),
    ("KDE", "Gaussian, box given", gauss, gauss_logpdf, N_GAUSS, BOX),
    ("KDE", "Gaussian, box guessed", gauss, gauss_logpdf, N_GAUSS, None),
    ("clusterMAF", "two modes, box given", modes, modes_logpdf, N_MODES, BOX2),
]


def nan_cell(counts):
    raised = int(np.sum(counts < 0))
    nans = int(counts[counts >= 0].sum())
    return f"{nans}" + (f"; raised ValueError in {raised} of {len(counts)}" if raised else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--repeats-cluster", type=int, default=10, help="data sets for clusterMAF (its fits are slow)")
    ap.add_argument("--cases", default="all", help="comma-separated indices into CASES, or all")
    args = ap.parse_args()
    import tensorflow as tf

    pk = Packages()
    cases = CASES if args.cases == "all" else [CASES[int(i)] for i in args.cases.split(",")]
    rows, started = [], time.time()
    for kind, label, draw, logpdf, n, box in cases:
        items = pk.items + ([pk.guess] if box is None else [])
        res = {name: [] for name, _ in items}
        res[TRUTH] = []
        repeats = args.repeats_cluster if kind == "clusterMAF" else args.repeats
        for r in range(repeats):
            rng = np.random.default_rng(1000 + r)
            theta = draw(n, rng)
            b = guessed_box(theta) if box is None else box
            kl, bmd = exact_stats(logpdf, draw, b, np.random.default_rng(5000 + r))
            f = logpdf(theta) + np.log(np.prod(b[:, 1] - b[:, 0]))
            res[TRUTH].append(dict(kl=f.mean() - kl, bmd=2 * f.var() - bmd))
            for name, pkg in items:
                np.random.seed(r)  # noqa: NPY002  (margarine draws from the global generators)
                tf.random.set_seed(r)
                de, st, t_fit, t_stats = script(pkg, kind, theta, box)
                res[name].append(
                    dict(
                        kl=st["KL Divergence"] - kl,
                        bmd=st["BMD"] - bmd,
                        kl_in=st["KL Lower Bound"] <= kl <= st["KL Upper Bound"],
                        bmd_in=st["BMD Lower Bound"] <= bmd <= st["BMD Upper Bound"],
                        kl_w=st["KL Upper Bound"] - st["KL Lower Bound"],
                        bmd_w=st["BMD Upper Bound"] - st["BMD Lower Bound"],
                        fit=t_fit,
                        stats=t_stats,
                        nan=nan_count(de, b, np.random.default_rng(9000 + r)),
                    )
                )
                print(f"{kind:10s} {label:22s} r={r} {name:16s} " + str(res[name][-1]), flush=True)
        for name in [TRUTH] + [name for name, _ in items]:
            v = {k: np.array([x[k] for x in res[name]], dtype=float) for k in res[name][0]}
            rows.append((kind, label, name, v, repeats))

    R = f"{args.repeats} (clusterMAF {args.repeats_cluster})"
    lines = [
        "# Benchmark: one margarine 1.4.2 script, two imports (margarine vs margflow.compat.margarine)",
        "",
        f"Run {datetime.date.today()} on {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; `python benchmarks/bench_compat.py --repeats {args.repeats} "
        f"--repeats-cluster {args.repeats_cluster}` "
        f"({(time.time() - started) / 60:.0f} min). {R} fresh data sets per case, both packages on the same samples "
        "in one process; the script is margarine's test suite's: `train(10000, early_stop=True, patience=400)`, "
        "`calculate(de).statistics()` (KDE: `generate_kde()`).",
        "Errors are against the exact D_KL and BMD of the target for the box the script used (10^6 exact draws). "
        "Coverage: the fraction of data sets whose [Lower Bound, Upper Bound] holds the exact value "
        "(margflow's interval is 68%; margarine's is the spread of three estimates). NaN: log_prob values "
        "that are NaN on 10^4 uniform points of the box widened by 10% of its width at each end, 31% of them "
        "outside it (sum over data sets), and how often log_prob raised on them instead. Times are means per data set.",
        "",
        f"The first row of each case is no estimator: the true density at the same samples, {TRUTH!r}. Its "
        "error is the data sets' Monte Carlo error, which every estimator on those samples shares; the mean "
        "error over the data sets has a standard error of about rms/sqrt(R).",
        "",
        "| estimator | case | package | R | KL mean error | KL rms | KL coverage (mean width) | BMD mean error "
        "| BMD rms | BMD coverage (mean width) | NaN | fit s | stats s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, label, name, v, repeats in rows:
        head = (
            f"| {kind} | {label} | {name} | {repeats} | {v['kl'].mean():+.4f} | {np.sqrt(np.mean(v['kl'] ** 2)):.4f} "
        )
        if name == TRUTH:
            lines.append(
                head + f"| – | {v['bmd'].mean():+.3f} | {np.sqrt(np.mean(v['bmd'] ** 2)):.3f} | – | – | – | – |"
            )
            continue
        lines.append(
            head + f"| {v['kl_in'].mean():.0%} ({v['kl_w'].mean():.3f}) | {v['bmd'].mean():+.3f} "
            f"| {np.sqrt(np.mean(v['bmd'] ** 2)):.3f} | {v['bmd_in'].mean():.0%} ({v['bmd_w'].mean():.3f}) "
            f"| {nan_cell(v['nan'])} | {v['fit'].mean():.1f} | {v['stats'].mean():.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(os.path.dirname(__file__), "RESULTS-compat.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    sys.exit(main())
