"""Pictures: estimator draws over the weighted samples, training curves, statistics with error bars.

matplotlib and anesthetic's plotting are imported when a function here is
called, not with margflow. Every function draws on axes it is given, or makes
them, and returns what it drew on, so a notebook cell can add to the figure.
"""

from __future__ import annotations

import numpy as np

__all__ = ["corner", "training_curves", "statistics"]


def _samples_frame(estimator, samples):
    """anesthetic samples of the estimator's parameters: ``samples`` as given, or its own training samples."""
    from anesthetic import MCMCSamples

    from margflow.data import load_samples

    if samples is None:
        data = estimator.data
        source = data.source
    else:
        data = load_samples(samples, params=estimator.params)
        source = samples if hasattr(samples, "get_weights") else None
    frame = MCMCSamples(data=data.theta, columns=list(estimator.params), weights=data.weights)
    labels = getattr(source, "get_labels_map", None)
    if labels is not None:
        known = labels()
        for p in estimator.params:
            if p in known.index and known[p]:
                frame.set_label(p, known[p])
    return frame


def corner(
    estimator,
    samples=None,
    *,
    n=10_000,
    axes=None,
    seed=0,
    kinds=None,
    labels=("samples", None),
    colors=("C0", "C1"),
):
    """The estimator's draws over the weighted samples, on anesthetic corner axes.

    Parameters
    ----------
    estimator : DensityEstimator
    samples : DataFrame, anesthetic samples or ndarray, optional
        What to compare with (its columns named as the estimator's
        parameters); default the samples the estimator was fit to, with their
        weights and anesthetic labels.
    n : int
        Number of estimator draws.
    axes : anesthetic axes, optional
        From :func:`anesthetic.make_2d_axes` (or an earlier call); default new
        axes of the estimator's parameters.
    seed : int
        Seeds the draws.
    kinds : dict, optional
        anesthetic's ``kinds`` (default: ``kde_1d`` on the diagonal,
        ``kde_2d`` contours below it).
    labels : (str, str)
        Legend entries of the samples and of the estimator (``None``: its
        class name).
    colors : (str, str)

    Returns
    -------
    fig, axes
        As :func:`anesthetic.make_2d_axes` returns them.
    """
    from anesthetic import MCMCSamples, make_2d_axes

    params = list(estimator.params)
    if axes is None:
        fig, axes = make_2d_axes(params, upper=False)
    else:
        fig = np.asarray(axes.to_numpy()).ravel()[0].figure
    kinds = kinds or {"diagonal": "kde_1d", "lower": "kde_2d"}
    ref = _samples_frame(estimator, samples)
    draws = MCMCSamples(data=estimator.sample(int(n), seed=seed), columns=params)
    for p in params:
        draws.set_label(p, ref.get_label(p))
    ref_label = labels[0]
    est_label = labels[1] if labels[1] is not None else type(estimator).__name__
    ref.plot_2d(axes, kinds=kinds, label=ref_label, color=colors[0])
    # the estimator's contours as lines (fc=None), so the samples' filled ones show through them
    draws.plot_2d(axes, kinds=kinds, label=est_label, color=colors[1], lower_kwargs={"fc": None})
    first = axes.iloc[-1, 0]
    handles, names = first.get_legend_handles_labels()
    if not handles:  # 2-D contours carry no legend entries in every anesthetic version
        twin = getattr(axes.iloc[0, 0], "twin", axes.iloc[0, 0])
        handles, names = twin.get_legend_handles_labels()
    if handles:
        fig.legend(handles[:2], names[:2], loc="upper right")
    return fig, axes


def training_curves(history, ax=None):
    """Training and held-out loss per epoch, with the best epoch marked.

    Parameters
    ----------
    history : History or list of History
        What ``fit`` returned (a list for :class:`~margflow.PiecewiseMAF`
        and :class:`~margflow.Ensemble`: one pair of curves per member).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    import matplotlib.pyplot as plt

    hists = history if isinstance(history, (list, tuple)) else [history]
    if not hists or not all(hasattr(h, "loss") and hasattr(h, "val_loss") for h in hists):
        raise ValueError("training_curves needs the History (or list of them) that fit returned")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for k, h in enumerate(hists):
        color = f"C{k % 10}"
        tag = f"member {k}: " if len(hists) > 1 else ""
        epochs = np.arange(len(h.loss))
        ax.plot(epochs, h.loss, color=color, alpha=0.5, label=f"{tag}loss")
        ax.plot(epochs, h.val_loss, color=color, ls="--", label=f"{tag}val_loss")
        if h.best_epoch >= 0 and len(h.loss):
            ax.axvline(h.best_epoch, color=color, lw=0.8, ls=":")
            ax.plot([h.best_epoch], [h.best_val_loss], "o", color=color, label=f"{tag}best epoch {h.best_epoch}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(fontsize="small")
    return ax


def statistics(stats, columns=("D_KL", "d_G"), exact=None, axes=None):
    """Marginal statistics as mean ± standard deviation of their draws, one row per analysis.

    Parameters
    ----------
    stats : DataFrame or dict of str to DataFrame
        What :func:`~margflow.marginal_stats` returned, or several of them by
        name (analyses, estimators, parameter subsets).
    columns : sequence of str
        The statistics to show, one panel each.
    exact : dict, optional
        Known values by column, drawn as vertical lines.
    axes : sequence of matplotlib Axes, optional
        One per column.

    Returns
    -------
    list of matplotlib Axes
    """
    import matplotlib.pyplot as plt

    named = stats if isinstance(stats, dict) else {"": stats}
    columns = list(columns)
    for name, frame in named.items():
        have = set(frame.columns.get_level_values(0)) if hasattr(frame, "columns") else set()
        missing = [c for c in columns if c not in have]
        if missing:
            raise ValueError(f"statistics {missing} are not columns of {name or 'stats'} (it has {sorted(have)})")
    if axes is None:
        _, axes = plt.subplots(
            1, len(columns), figsize=(3.2 * len(columns), 1.3 + 0.45 * len(named)), squeeze=False, layout="constrained"
        )
        axes = list(axes[0])
    if len(axes) != len(columns):
        raise ValueError(f"{len(columns)} columns need {len(columns)} axes, got {len(axes)}")
    rows = np.arange(len(named))[::-1]
    label = getattr(next(iter(named.values())), "get_label", None)  # anesthetic's TeX labels
    for i, (ax, col) in enumerate(zip(axes, columns)):
        for y, frame in zip(rows, named.values()):
            v = np.asarray(frame[col], dtype=np.float64)
            ax.errorbar(v.mean(), y, xerr=v.std(ddof=1), fmt="o", color="C0", capsize=3)
        if exact is not None and col in exact:
            ax.axvline(exact[col], color="k", lw=0.8, ls="--", label="exact")
        ax.set_xlabel(label(col) if label is not None else col)
        ax.set_yticks(rows, list(named) if i == 0 else [""] * len(named))
        ax.set_ylim(-0.7, len(named) - 0.3)
    return axes
