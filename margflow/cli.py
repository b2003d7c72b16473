"""The ``margflow`` command line.

margflow demo [--output FILE] [--epochs N] [--quiet]
margflow info FILE
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


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
    hist = flow.fit(epochs=args.epochs, progress=not args.quiet)
    print(
        f"trained {hist.epochs} epochs in {hist.wall_time:.1f} s; best epoch {hist.best_epoch} "
        f"(val_loss {hist.best_val_loss:.4f}){', stopped early' if hist.stopped_early else ''}"
    )
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
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"margflow {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
