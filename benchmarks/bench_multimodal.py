"""Multimodal targets: margflow MAF, PiecewiseMAF and KDE against margarine 1.4.2's clusterMAF, in one run.

Per target and seed: 10,000 exact training samples, KL(p||q) = E_p[log p - log q] on 20,000 fresh exact
samples, fit wall time; mean ± standard deviation over the seeds (the piecewise paper, arXiv:2305.02930,
reports its KLs that way). Each estimator is run as its users run it: ``mf.MAF(x).fit()``,
``mf.PiecewiseMAF(x).fit()`` (k by silhouette), ``mf.KDE(x)`` (Scott's bandwidth), margarine
``clusterMAF(x).train(10000, early_stop=True)``. Also times the choice of k for 100,000 samples.

    python benchmarks/bench_multimodal.py [--targets two_moons,...] [--repeats 5] [--margarine-repeats 5]
        [--no-margarine] [--output benchmarks/RESULTS-multimodal.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_maf import kl, machine, timed  # noqa: E402
from targets import MULTIMODAL  # noqa: E402

N_TRAIN, N_TEST = 10_000, 20_000
PAPER = {"two_moons": "0.004 ± 0.022", "eight_gaussians": "0.001 ± 0.005", "two_rings": "0.031 ± 0.032"}


def run_margflow(kind, x, xt, logp, seed):
    import margflow as mf

    info = {}
    if kind == "KDE":
        est, t_fit = timed(lambda: mf.KDE(x, seed=seed))
    else:
        cls = {"MAF": mf.MAF, "PiecewiseMAF": mf.PiecewiseMAF}[kind]
        est, t_build = timed(lambda: cls(x, seed=seed))
        _, t_train = timed(lambda: est.fit(progress=False))
        t_fit = t_build + t_train
        if kind == "PiecewiseMAF":
            info["k"] = est.n_clusters
    return {"kl": kl(logp, est.log_prob(xt)), "fit": t_fit, **info}


def run_margarine(x, xt, logp, seed):
    import tensorflow as tf
    from margarine.clustered import clusterMAF

    tf.random.set_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (margarine draws from the global state)
    m, t_build = timed(lambda: clusterMAF(x.astype(np.float32)))
    _, t_train = timed(lambda: m.train(10000, early_stop=True))
    lq = np.asarray(m.log_prob(xt.astype(np.float32)), dtype=np.float64)
    return {"kl": kl(logp, lq), "fit": t_build + t_train, "k": int(m.cluster_number)}


def k_choice_time():
    import margflow as mf

    x = MULTIMODAL["eight_gaussians"]().sample(100_000, np.random.default_rng(7))
    pw, t = timed(lambda: mf.PiecewiseMAF(x, seed=0))
    return t, pw.n_clusters


def summary(runs):
    kls = np.array([r["kl"][0] for r in runs])
    bad = sum(r["kl"][2] for r in runs)
    fit = np.mean([r["fit"] for r in runs])
    ks = sorted({r["k"] for r in runs if "k" in r})
    return kls, bad, fit, ks


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default=",".join(MULTIMODAL))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--margarine-repeats", type=int, default=None)
    ap.add_argument("--no-margarine", action="store_true")
    ap.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "RESULTS-multimodal.md"))
    args = ap.parse_args()
    kinds = ["PiecewiseMAF", "MAF", "KDE"] + ([] if args.no_margarine else ["margarine clusterMAF"])
    mg_repeats = args.repeats if args.margarine_repeats is None else args.margarine_repeats

    results = {}
    for name in args.targets.split(","):
        target = MULTIMODAL[name]()
        results[name] = {k: [] for k in kinds}
        for r in range(args.repeats):
            x = target.sample(N_TRAIN, np.random.default_rng(1 + 10 * r))
            xt = target.sample(N_TEST, np.random.default_rng(1000 + r))
            logp = target.logpdf(xt)
            for kind in kinds:
                if kind.startswith("margarine"):
                    if r >= mg_repeats:
                        continue
                    out = run_margarine(x, xt, logp, r)
                else:
                    out = run_margflow(kind, x, xt, logp, r)
                results[name][kind].append(out)
                print(
                    f"{target.name} [{r}] {kind}: KL {out['kl'][0]:.4f} fit {out['fit']:.1f}s {out.get('k', '')}",
                    flush=True,
                )
    t_k, k = k_choice_time()
    print(f"choosing k for 100,000 samples: {t_k:.1f} s (k = {k})", flush=True)
    write(results, kinds, args, t_k, k)


def write(results, kinds, args, t_k, k):
    lines = [
        "# Benchmark: multimodal targets (PiecewiseMAF, MAF, KDE vs margarine 1.4.2 clusterMAF)",
        "",
        f"Run {time.strftime('%Y-%m-%d')} on {machine()}; all estimators in one process.",
        f"{N_TRAIN:,} training samples per seed, KL(p||q) on {N_TEST:,} fresh exact samples, mean ± standard",
        "deviation over seeds (the piecewise paper's convention); fit time is construction (k-means, bandwidth)",
        "plus training. margarine's log_prob is NaN outside the range it guessed: its KL is over the finite points",
        "and the count of the others is given.",
        "",
        "| target | estimator | seeds | KL mean ± std | non-finite | fit s (mean) | k | paper (piecewise) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, per_kind in results.items():
        target = MULTIMODAL[name]()
        for kind in kinds:
            runs = per_kind[kind]
            if not runs:
                continue
            kls, bad, fit, ks = summary(runs)
            paper = PAPER.get(name, "") if kind == "PiecewiseMAF" else ""
            lines.append(
                f"| {target.name} | {kind} | {len(runs)} | {kls.mean():.4f} ± {kls.std():.4f} | {bad} | {fit:.1f} | "
                f"{', '.join(map(str, ks))} | {paper} |"
            )
    lines += [
        "",
        f"Choosing k (silhouette, k = 2…10) for 100,000 samples of the 8 Gaussians: {t_k:.1f} s (k = {k}).",
        "",
        "Per seed, KL / fit s:",
        "",
    ]
    for name, per_kind in results.items():
        for kind in kinds:
            runs = per_kind[kind]
            if runs:
                vals = ", ".join(f"{r['kl'][0]:.4f} / {r['fit']:.1f}" for r in runs)
                lines.append(f"- {MULTIMODAL[name]().name}, {kind}: {vals}")
    with open(args.output, "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
