"""Pictures, headless (Agg): what is drawn is the data given, and the PNGs are written."""

import subprocess
import sys

import matplotlib
import numpy as np
import pandas as pd
import pytest

import margflow as mf
from margflow import plot
from margflow.flows.train import History

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def kde():
    rng = np.random.default_rng(0)
    x = rng.multivariate_normal([0.3, 0.8], [[9e-4, -9.6e-4], [-9.6e-4, 1.6e-3]], 3000)
    w = rng.uniform(0.5, 1.5, len(x))
    return mf.KDE(x, params=["Omega_m", "sigma8"], weights=w, bounds={"Omega_m": (0.1, 0.6)})


def test_corner_overlays_the_estimator_on_its_weighted_samples(kde, tmp_path):
    fig, axes = plot.corner(kde, n=4000, seed=1)
    assert list(axes.index) == ["Omega_m", "sigma8"] == list(axes.columns)
    # each diagonal panel holds two 1-D densities (samples, estimator) centred on the weighted mean
    w = kde.data.weights / kde.data.weights.sum()
    mean, sd = w @ kde.data.theta, np.sqrt(w @ (kde.data.theta - w @ kde.data.theta) ** 2)
    for i, p in enumerate(["Omega_m", "sigma8"]):
        lines = axes.loc[p, p].twin.get_lines()
        assert len(lines) == 2
        for line in lines:
            x, y = (np.asarray(v, dtype=float) for v in line.get_data())
            assert abs(np.sum(x * y) / np.sum(y) - mean[i]) < 0.1 * sd[i]  # a regular grid: a sum will do
    # the 2-D panel holds both sets of contours; the legend names both
    assert len(axes.loc["sigma8", "Omega_m"].collections) >= 2
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["samples", "KDE"]
    fig.savefig(tmp_path / "corner.png")
    assert (tmp_path / "corner.png").stat().st_size > 10_000


def test_corner_on_other_samples_and_existing_axes(kde):
    other = pd.DataFrame(kde.sample(2000, seed=5), columns=["Omega_m", "sigma8"])
    fig, axes = plot.corner(kde, other, n=2000, labels=("chain B", "fit A"))
    fig2, axes2 = plot.corner(kde, other, n=2000, axes=axes, labels=("chain B", "again"))
    assert fig2 is fig and len(axes.loc["Omega_m", "Omega_m"].twin.get_lines()) == 4
    with pytest.raises(ValueError, match="unknown parameters"):
        plot.corner(kde, pd.DataFrame({"a": [1.0, 2.0]}))


def test_training_curves_draw_the_history():
    h = History(loss=[3.0, 2.5, 2.2, 2.1], val_loss=[3.1, 2.6, 2.4, 2.45], best_epoch=2, best_val_loss=2.4)
    ax = plot.training_curves(h)
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_array_equal(lines["loss"].get_ydata(), h.loss)
    np.testing.assert_array_equal(lines["val_loss"].get_ydata(), h.val_loss)
    best = lines["best epoch 2"]
    assert list(best.get_xdata()) == [2] and list(best.get_ydata()) == [2.4]
    # a mixture's list: one pair of curves per member
    ax = plot.training_curves([h, History(loss=[1.0, 0.9], val_loss=[1.1, 1.0], best_epoch=1, best_val_loss=1.0)])
    labels = [line.get_label() for line in ax.get_lines()]
    assert "member 0: loss" in labels and "member 1: val_loss" in labels
    with pytest.raises(ValueError, match="History"):
        plot.training_curves({"loss": [1.0]})


def test_statistics_are_mean_and_sd_of_the_draws(kde, tmp_path):
    rng = np.random.default_rng(2)
    a = pd.DataFrame({"D_KL": rng.normal(3.2, 0.02, 200), "d_G": rng.normal(2.0, 0.1, 200)})
    b = pd.DataFrame({"D_KL": rng.normal(3.1, 0.05, 200), "d_G": rng.normal(2.2, 0.2, 200)})
    axes = plot.statistics({"A": a, "B": b}, exact={"D_KL": 3.19})
    for ax, col in zip(axes, ["D_KL", "d_G"]):
        bars = ax.containers
        assert len(bars) == 2
        for bar, frame in zip(bars, [a, b]):
            x = bar.lines[0].get_xdata()[0]
            assert x == pytest.approx(frame[col].mean())
            seg = bar.lines[2][0].get_segments()[0]  # the horizontal error bar
            assert seg[1][0] - seg[0][0] == pytest.approx(2 * frame[col].std())
    ticks = dict(zip(axes[0].get_yticks(), (t.get_text() for t in axes[0].get_yticklabels())))
    assert ticks == {1: "A", 0: "B"}  # the first analysis on top
    axes[0].figure.savefig(tmp_path / "stats.png")
    with pytest.raises(ValueError, match=r"\['logZ'\] are not columns of A"):
        plot.statistics({"A": a}, columns=["D_KL", "logZ"])


def test_import_margflow_does_not_import_the_plotting():
    code = "import sys, margflow; print('margflow.plot' in sys.modules, 'anesthetic.plot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[-2:] == ["False", "False"]
