"""margflow MAF against margarine 1.4.2's MAF, side by side in one run.

For each target: 10,000 exact training samples; both estimators fit with
their users' defaults (margflow: ``MAF(x).fit()``; margarine:
``MAF(x).train(10000, early_stop=True)``); then on 20,000 fresh exact samples
KL(p||q) = E_p[log p - log q] with its standard error, fit wall time, and
log_prob / sample throughput on 10^5 points. Writes benchmarks/RESULTS.md.

    pip install torch==2.13.0 margarine==1.4.2   # CPU torch first
    python benchmarks/bench_maf.py [--targets banana,himmelblau,...] [--no-margarine] [--repeats 3]

With ``--repeats R`` each target is fitted R times, each time on a fresh
training set (seed 1 + 10 r) with margflow seed r and TensorFlow/numpy global
seeds r for margarine (which has no seed argument); the table gives the mean
over repeats and the per-repeat values follow it. Both packages vary between
runs, so ratios from one repeat are not evidence.
"""

import argparse
import datetime
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from targets import TARGETS  # noqa: E402

N_TRAIN, N_TEST, N_SPEED = 10_000, 20_000, 100_000


def kl(logp, logq):
    ok = np.isfinite(logq)
    d = logp[ok] - logq[ok]
    return d.mean(), d.std() / np.sqrt(ok.sum()), int((~ok).sum())


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def per_call(fn, calls=200, rounds=7):
    """Seconds per call: the median over rounds of ``calls`` calls (a shared machine has hiccups)."""
    fn()
    return float(np.median([timed(lambda: [fn() for _ in range(calls)])[1] / calls for _ in range(rounds)]))


def run_margflow(x, xt, logp, seed=0):
    import margflow as mf

    flow = mf.MAF(x, seed=seed)
    hist, t_fit = timed(lambda: flow.fit(progress=False))
    k = kl(logp, flow.log_prob(xt))
    xs = np.concatenate([xt] * (N_SPEED // len(xt)))
    # warm calls of the full size: the first call at a new size compiles (once
    # per architecture and block size, about a second each)
    _, t_first = timed(lambda: flow.log_prob(xs))
    _, t_lp = timed(lambda: flow.log_prob(xs))
    flow.sample(N_SPEED, seed=0)
    _, t_s = timed(lambda: flow.sample(N_SPEED, seed=1))
    one = xt[:1]
    u = np.full((1, x.shape[1]), 0.3)
    t_one, t_one_u = per_call(lambda: flow.log_prob(one)), per_call(lambda: flow.transform(u))
    return {
        "kl": k,
        "fit": t_fit,
        "epochs": hist.epochs,
        "lp_s": t_lp,
        "sample_s": t_s,
        "one_ms": t_one * 1e3,
        "one_transform_ms": t_one_u * 1e3,
        "lp_first_s": t_first,
    }


def run_margarine(x, xt, logp):
    from margarine.maf import MAF

    m = MAF(x)
    _, t_fit = timed(lambda: m.train(10000, early_stop=True))
    lq = np.asarray(m.log_prob(xt.astype(np.float32)), dtype=np.float64)
    k = kl(logp, lq)
    xs = np.concatenate([xt] * (N_SPEED // len(xt))).astype(np.float32)
    m.log_prob(xs)
    _, t_lp = timed(lambda: np.asarray(m.log_prob(xs)))
    m.sample(N_SPEED)
    _, t_s = timed(lambda: np.asarray(m.sample(N_SPEED)))
    return {"kl": k, "fit": t_fit, "epochs": len(m.loss_history), "lp_s": t_lp, "sample_s": t_s}


def machine():
    import tensorflow as tf

    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, TensorFlow {tf.__version__}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--no-margarine", action="store_true")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "RESULTS.md"))
    args = ap.parse_args()
    rows = []
    for key in args.targets.split(","):
        target = TARGETS[key]()
        xt = target.sample(N_TEST, np.random.default_rng(2))
        logp = target.logpdf(xt)
        ours, theirs = [], []
        for r in range(args.repeats):
            x = target.sample(N_TRAIN, np.random.default_rng(1 + 10 * r))
            ours.append(run_margflow(x, xt, logp, seed=r))
            print(f"{target.name} [{r}]: margflow {ours[-1]}", flush=True)
            if not args.no_margarine:
                import tensorflow as tf

                tf.random.set_seed(r)
                np.random.seed(r)  # noqa: NPY002 (margarine draws from the global state)
                theirs.append(run_margarine(x, xt, logp))
                print(f"{target.name} [{r}]: margarine {theirs[-1]}", flush=True)
        rows.append((target.name, _mean(ours), _mean(theirs) if theirs else None, ours, theirs))
    write(rows, args.output)


def _mean(runs):
    """Mean over repeats of every number; KL keeps (mean, standard error of the mean, non-finite count)."""
    out = {k: float(np.mean([r[k] for r in runs])) for k in runs[0] if k != "kl"}
    kls = np.array([r["kl"][0] for r in runs])
    ses = np.array([r["kl"][1] for r in runs])
    se = kls.std(ddof=1) / np.sqrt(len(kls)) if len(kls) > 1 else ses[0]
    out["kl"] = (kls.mean(), se, int(sum(r["kl"][2] for r in runs)))
    return out


def write(rows, path):
    lines = [
        "# Benchmark: margflow MAF vs margarine 1.4.2 MAF",
        "",
        f"Run {datetime.date.today()} on {machine()}, both in one process, one after the other per target.",
        f"{N_TRAIN:,} training samples per target; KL(p||q) on {N_TEST:,} fresh exact samples (± standard error);",
        "margarine's log_prob is NaN outside the range it guessed from the samples: its KL is over the finite",
        f"points only and the count of non-finite ones is given. Throughput on {N_SPEED:,} points, after one warm call of that size.",
        "",
        "| target | margflow KL | margarine KL (finite pts) | non-finite (margarine) | KL ratio | margflow fit s (epochs) "
        "| margarine fit s (epochs) | fit-time ratio | log_prob 1e5 s (mf / mg) | sample 1e5 s (mf / mg) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, a, b, _, _ in rows:
        if b is None:
            lines.append(
                f"| {name} | {a['kl'][0]:.4f} ± {a['kl'][1]:.4f} | – | – | – | {a['fit']:.1f} ({a['epochs']:.0f}) | – | – "
                f"| {a['lp_s']:.3f} / – | {a['sample_s']:.3f} / – |"
            )
            continue
        lines.append(
            f"| {name} | {a['kl'][0]:.4f} ± {a['kl'][1]:.4f} | {b['kl'][0]:.4f} ± {b['kl'][1]:.4f} | {b['kl'][2]} "
            f"| {a['kl'][0] / b['kl'][0]:.2f} | {a['fit']:.1f} ({a['epochs']:.0f}) | {b['fit']:.1f} ({b['epochs']:.0f}) "
            f"| {a['fit'] / b['fit']:.2f} | {a['lp_s']:.3f} / {b['lp_s']:.3f} | {a['sample_s']:.3f} / {b['sample_s']:.3f} |"
        )
    lines += [
        "",
        "margflow on one point (median of 7 rounds of 200 calls), log_prob / transform: "
        + ", ".join(f"{n}: {a['one_ms']:.2f} / {a['one_transform_ms']:.2f} ms" for n, a, *_ in rows),
        "",
        "margflow's first log_prob call on 1e5 points, compiling included (timed above: a second call): "
        + ", ".join(f"{n}: {a['lp_first_s']:.2f} s" for n, a, *_ in rows),
        "",
    ]
    if any(len(r[3]) > 1 for r in rows):
        lines += [
            f"Means over {len(rows[0][3])} repeats (± standard error over repeats). Per repeat, KL and fit s:",
            "",
        ]
        for name, _, _, ours, theirs in rows:
            mf_runs = ", ".join(f"{o['kl'][0]:.4f} / {o['fit']:.1f}" for o in ours)
            mg_runs = ", ".join(f"{t['kl'][0]:.4f} / {t['fit']:.1f}" for t in theirs) or "–"
            lines.append(f"- {name}: margflow {mf_runs}; margarine {mg_runs}")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
