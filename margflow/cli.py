"""The ``margflow`` command line, for batch jobs.

margflow fit SOURCE --params A B ... --output MODEL [--bounds A=LO:HI ...] [--estimator MAF] ...
margflow sample MODEL -n N --output DRAWS.csv [--seed S]
margflow stats MODEL [--samples SOURCE] [--nsamples N] [--ensemble M] [--output STATS.csv]
margflow info MODEL
margflow demo [--output FILE] [--epochs N] [--quiet]

``SOURCE`` is a table with a header row of column names (``.csv`` comma
separated, other names whitespace separated, ``#`` comments skipped) or the
root of a chains run that ``anesthetic.read_chains`` reads (PolyChord,
MultiNest, UltraNest, Cobaya, GetDist). Every command exits with status 2 and
a one-line message naming the problem for a missing file, an unknown column,
bad bounds or a bad model file, and ``fit`` with status 1 and the training
loop's message when the loss diverges.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _history_line(h):
    """What one ``fit`` did, in a line."""
    return (
        f"trained {h.epochs} epochs in {h.wall_time:.1f} s; best epoch {h.best_epoch} "
        f"(val_loss {h.best_val_loss:.4f}){', stopped early' if h.stopped_early else ''}"
    )


def _demo(args):
    import numpy as np

    import margflow as mf
    from margflow.examples import BOUNDS, CORE, COV, MEAN, PARAMS, load_example

    samples, bounds = load_example()
    print(
        f"example nested-sampling run: {len(samples)} samples of {PARAMS}, logZ = {samples.logZ():.3f}; "
        f"fitting the marginal of {CORE} with the nuisance parameters integrated out"
    )
    flow = mf.MAF(samples, params=CORE, bounds={p: BOUNDS[p] for p in CORE}, seed=args.seed)
    print(_history_line(flow.fit(epochs=args.epochs, progress=not args.quiet)))
    draws = flow.sample(100_000, seed=args.seed)
    w = flow.data.weights / flow.data.weights.sum()
    chain_mean = w @ flow.data.theta
    chain_sd = np.sqrt(w @ (flow.data.theta - chain_mean) ** 2)
    exact_sd = np.sqrt(np.diag(COV)[:2])
    print(
        f"{'parameter':>10} {'flow mean':>10} {'chain mean':>10} {'exact':>8} {'flow sd':>9} {'chain sd':>9} {'exact':>8}"
    )
    for i, p in enumerate(CORE):
        print(
            f"{p:>10} {draws[:, i].mean():10.4f} {chain_mean[i]:10.4f} {MEAN[i]:8.4f} "
            f"{draws[:, i].std():9.4f} {chain_sd[i]:9.4f} {exact_sd[i]:8.4f}"
        )
    # KL from the exact Gaussian marginal to the flow, on exact draws
    from scipy.stats import multivariate_normal

    exact = multivariate_normal(MEAN[:2], COV[:2, :2])
    x = exact.rvs(20_000, random_state=np.random.default_rng(args.seed + 1))
    kl = exact.logpdf(x) - flow.log_prob(x)
    print(f"KL(exact marginal || flow) = {kl.mean():.4f} ± {kl.std() / np.sqrt(len(kl)):.4f} nats")
    flow.save(args.output)
    print(f"model written to {args.output}  (load with margflow.load({args.output!r}))")
    return 0


def _info(args):
    from margflow.io import read_metadata

    meta = read_metadata(args.file)
    cfg = meta.get("config", {})
    hist = cfg.get("history")
    print(f"{args.file}: {meta['class']} written by margflow {meta['margflow_version']} on {meta['created']}")
    print(f"  parameters: {meta['params']}")
    print(f"  preprocessing: {meta['preprocessing']}")
    print(f"  architecture: { {k: v for k, v in cfg.items() if k not in ('history', 'fit', 'permutations')} }")
    if cfg.get("fit"):
        print(f"  training: {cfg['fit']}")
    if hist:
        print(
            f"  history: {len(hist['loss'])} epochs, best epoch {hist['best_epoch']} (val_loss {hist['best_val_loss']:.5g})"
        )
    print(f"  logZ of the input: {meta['logZ']}")
    return 0


ESTIMATORS = ("MAF", "RealNVP", "SplineFlow", "PiecewiseMAF", "KDE")


class CommandError(ValueError):
    """A mistake in the command line itself (reported like bad input)."""


def _read_source(source, weights_column=None):
    """The samples of ``source``: a DataFrame, anesthetic MCMCSamples (a weighted table) or what
    ``anesthetic.read_chains`` reads."""
    import os

    import numpy as np
    import pandas as pd

    if os.path.isfile(source):
        sep = "," if source.lower().endswith((".csv", ".csv.gz")) else r"\s+"
        try:
            frame = pd.read_csv(source, sep=sep, comment="#", float_precision="round_trip")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise CommandError(f"cannot read {source} as a table: {err}") from None
        try:
            [float(c) for c in frame.columns]
        except ValueError:
            pass
        else:
            raise CommandError(
                f"{source} has no header row of column names (its first row is numbers); add one, "
                "e.g. 'omega_m sigma8 weight', or give the chains root to anesthetic"
            )
        if weights_column is None:
            return frame
        if weights_column not in frame.columns:
            raise CommandError(
                f"no weights column {weights_column!r} in {source}; its columns are {list(frame.columns)}"
            )
        weights = frame.pop(weights_column).to_numpy(dtype=np.float64)
        from anesthetic import MCMCSamples

        return MCMCSamples(data=frame, weights=weights)
    if weights_column is not None:
        raise CommandError("--weights names a column of a table file; a chains root carries its own weights")
    from anesthetic import read_chains

    try:
        return read_chains(source)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no file {source!r}, and no chains root of that name that anesthetic.read_chains reads "
            "(PolyChord, MultiNest, UltraNest, Cobaya, GetDist)"
        ) from None


def _parse_bounds(items):
    """``["a=0:1", "b=-inf:5"]`` to ``{"a": (0.0, 1.0), "b": (-inf, 5.0)}``."""
    out = {}
    for item in items or ():
        name, eq, span = item.partition("=")
        lo, colon, hi = span.partition(":")
        try:
            if not (eq and colon and name):
                raise ValueError
            lo, hi = float(lo), float(hi)
        except ValueError:
            raise CommandError(
                f"bad bounds {item!r}: write NAME=LOWER:UPPER, e.g. omega_m=0.1:0.5 (inf or -inf for an open side)"
            ) from None
        if not lo < hi:
            raise CommandError(f"bad bounds {item!r}: the lower bound must be below the upper")
        if name in out:
            raise CommandError(f"bounds for {name!r} are given twice")
        out[name] = (lo, hi)
    return out


def _fit(args):
    import margflow as mf

    samples = _read_source(args.source, args.weights)
    bounds = _parse_bounds(args.bounds)
    params = args.params
    if params is not None:
        unknown = sorted(set(bounds) - set(params))
        if unknown:
            raise CommandError(f"bounds given for {unknown}, which are not among --params {params}")
    cls = getattr(mf, args.estimator)
    kwargs = {"params": params, "bounds": bounds or None, "seed": args.seed}
    if args.estimator == "PiecewiseMAF" and args.clusters is not None:
        kwargs["n_clusters"] = args.clusters
    elif args.clusters is not None:
        raise CommandError("--clusters is for --estimator PiecewiseMAF")
    est = cls(samples, **kwargs)
    print(
        f"{args.source}: {len(est.data.theta)} samples of {est.params}, Kish effective sample size "
        f"{mf.data.kish_ess(est.data.weights):.0f}; fitting a {args.estimator}"
    )
    if hasattr(est, "fit"):
        rate = {} if args.learning_rate is None else {"learning_rate": args.learning_rate}
        hist = est.fit(epochs=args.epochs, progress=not args.quiet, **rate)
        hists = hist if isinstance(hist, list) else [hist]
        for k, h in enumerate(hists):
            print((f"member {k}: " if len(hists) > 1 else "") + _history_line(h))
    est.save(args.output)
    print(f"model written to {args.output}")
    return 0


def _sample(args):
    import numpy as np

    import margflow as mf

    if args.n < 1:
        raise CommandError(f"-n must be a positive number of draws, got {args.n}")
    est = mf.load(args.model)
    draws = est.sample(args.n, seed=args.seed)
    out = sys.stdout if args.output == "-" else args.output
    np.savetxt(out, draws, fmt="%.17g", delimiter=",", header=",".join(est.params), comments="")
    if args.output != "-":
        print(f"{args.n} draws of {est.params} written to {args.output}")
    return 0


def _stats(args):
    import numpy as np

    import margflow as mf
    from margflow.densities import log_density

    if args.nsamples < 2:
        raise CommandError(f"--nsamples must be at least 2, got {args.nsamples}")
    if args.weights is not None and args.samples is None:
        raise CommandError("--weights names the weights column of the --samples table")
    est = mf.load(args.model)
    try:
        log_density(None, est)  # marginal_stats' default prior: the uniform box of the model's bounds
    except ValueError as err:
        raise CommandError(
            f"{args.model}: {err}. Here the prior is that box: fit again with --bounds NAME=LO:HI for each "
            "parameter (the prior's range)"
        ) from None
    samples = None if args.samples is None else _read_source(args.samples, args.weights)
    stats = mf.marginal_stats(
        est, nsamples=args.nsamples, samples=samples, ensemble=args.ensemble, seed=args.seed, progress=not args.quiet
    )
    names = list(stats.columns.get_level_values(0))
    print(f"{args.model}: marginal statistics of {est.params} against the uniform prior on their bounds")
    if "logZ" in names and np.ptp(np.asarray(stats["logZ"], dtype=float)) == 0:
        print(
            "  logZ is the model file's value, without its nested-sampling error, and the bars leave that "
            "error out: give the run with --samples ROOT for both"
        )
    print(f"{'':>8} {'mean':>10} {'sd':>10} {'2.5%':>10} {'97.5%':>10}")
    for name in names:
        v = np.asarray(stats[name], dtype=np.float64)
        lo, hi = np.quantile(v, [0.025, 0.975])
        print(f"{name:>8} {v.mean():10.4f} {v.std(ddof=1):10.4f} {lo:10.4f} {hi:10.4f}")
    if args.output:
        np.savetxt(
            args.output,
            stats.to_numpy(dtype=np.float64),
            fmt="%.17g",
            delimiter=",",
            header=",".join(names),
            comments="",
        )
        print(f"{len(stats)} draws written to {args.output}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="margflow", description="Density estimators for marginal Bayesian statistics."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit the core parameters of the bundled nested-sampling run")
    demo.add_argument("--output", default="margflow-demo.mflow", help="model file to write")
    demo.add_argument("--epochs", type=int, default=1000, help="most training epochs")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)
    info = sub.add_parser("info", help="what a model file holds")
    info.add_argument("file")
    info.set_defaults(func=_info)

    fit = sub.add_parser("fit", help="fit an estimator to the samples of a chains file or root")
    fit.add_argument("source", help="a table with a header row (.csv or whitespace), or an anesthetic chains root")
    fit.add_argument("--params", nargs="+", help="the columns to fit (default: every parameter column)")
    fit.add_argument("--bounds", nargs="+", metavar="NAME=LO:HI", help="prior bounds (default: unbounded)")
    fit.add_argument("--weights", metavar="COLUMN", help="the weights column of a table (default: equal weights)")
    fit.add_argument("--estimator", choices=ESTIMATORS, default="MAF")
    fit.add_argument("--clusters", type=int, help="number of clusters of a PiecewiseMAF (default: chosen)")
    fit.add_argument("--epochs", type=int, default=1000, help="most training epochs")
    fit.add_argument("--learning-rate", type=float, help="initial Adam rate (default: the estimator's)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--output", "-o", required=True, help="model file to write")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    fit.set_defaults(func=_fit)

    sample = sub.add_parser("sample", help="draws from a model file, as CSV with a header row")
    sample.add_argument("model")
    sample.add_argument("-n", type=int, required=True, help="number of draws")
    sample.add_argument("--seed", type=int)
    sample.add_argument("--output", "-o", required=True, help="CSV file to write ('-' for standard output)")
    sample.set_defaults(func=_sample)

    stats = sub.add_parser("stats", help="marginal KL divergence and model dimensionality, with their spread")
    stats.add_argument("model")
    stats.add_argument("--nsamples", type=int, default=500, help="number of draws of the statistics")
    stats.add_argument(
        "--samples",
        metavar="SOURCE",
        help="the samples to average over, as for fit (default: the model's own); a nested-sampling root "
        "adds its weight uncertainty and evidence draws",
    )
    stats.add_argument("--weights", metavar="COLUMN", help="the weights column of a --samples table")
    stats.add_argument(
        "--ensemble",
        type=int,
        help="also cover the fit-to-fit scatter with this many bootstrap refits (the spread then comes from "
        "that many values: 16 or more)",
    )
    stats.add_argument("--seed", type=int)
    stats.add_argument("--output", "-o", help="CSV file for the draws")
    stats.add_argument("--quiet", action="store_true", help="no progress bar")
    stats.set_defaults(func=_stats)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"margflow {args.command}: error: {err}", file=sys.stderr)
        return 2
    except FloatingPointError as err:  # TrainingDivergedError: the input was fine, the fit was not
        print(f"margflow {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
