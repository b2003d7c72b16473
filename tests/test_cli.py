"""The command line: demo, fit, sample, stats and info, and its errors on bad input."""

import numpy as np
import pandas as pd
import pytest

import margflow as mf
from margflow.cli import main


def test_demo_writes_a_model_and_info_reads_it(tmp_path, capsys):
    out = tmp_path / "demo.mflow"
    assert main(["demo", "--output", str(out), "--epochs", "60", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "Omega_m" in text and "KL(exact marginal || flow)" in text and str(out) in text
    flow = mf.load(out)
    assert flow.params == ["Omega_m", "sigma8"]
    assert flow.logZ is not None and np.isfinite(flow.log_prob(flow.sample(10, seed=0))).all()
    assert main(["info", str(out)]) == 0
    assert "MAF" in capsys.readouterr().out


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.mflow")]) == 2
    assert "no model file" in capsys.readouterr().err


# ---- fit / sample / stats on chains files --------------------------------------------------------

CORE_BOUNDS = ["Omega_m=0.1:0.6", "sigma8=0.5:1.1"]


@pytest.fixture(scope="module")
def chains(tmp_path_factory):
    """The bundled run as a weighted CSV table, a whitespace table and a PolyChord root."""
    from margflow.examples import load_example

    samples, bounds = load_example()
    params = list(bounds)
    d = tmp_path_factory.mktemp("chains")
    theta = samples[params].to_numpy()
    table = pd.DataFrame(theta, columns=params).assign(weight=samples.get_weights())
    table.to_csv(d / "run.csv", index=False, float_format="%.17g")
    table.to_csv(d / "run.txt", index=False, sep=" ")
    np.savetxt(d / "nohead.csv", table.to_numpy(), delimiter=",")
    table.assign(weight=np.where(np.arange(len(table)) == 3, -1.0, table["weight"])).to_csv(d / "negw.csv", index=False)
    logL = samples.logL.to_numpy()
    birth = samples.logL_birth.to_numpy()
    np.savetxt(d / "pc_dead-birth.txt", np.column_stack([theta, logL, birth]))
    (d / "pc.paramnames").write_text("".join(f"{p} {p}\n" for p in params))
    return d, samples


def _run(capsys, *args):
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_fit_sample_stats_from_a_weighted_table(chains, tmp_path, capsys):
    d, samples = chains
    model = tmp_path / "m.mflow"
    rc, out, _ = _run(
        capsys, "fit", d / "run.csv", "--params", "Omega_m", "sigma8", "--bounds", *CORE_BOUNDS,
        "--weights", "weight", "--epochs", 5, "--quiet", "-o", model,
    )  # fmt: skip
    assert rc == 0 and "9606 samples" in out and str(model) in out
    flow = mf.load(model)
    assert flow.params == ["Omega_m", "sigma8"]
    np.testing.assert_allclose(flow.data.weights, samples.get_weights(), rtol=0)
    np.testing.assert_array_equal(flow.data.bounds, [[0.1, 0.6], [0.5, 1.1]])

    rc, out, _ = _run(capsys, "sample", model, "-n", 300, "--seed", 3, "-o", tmp_path / "draws.csv")
    assert rc == 0
    draws = pd.read_csv(tmp_path / "draws.csv", float_precision="round_trip")
    assert list(draws.columns) == ["Omega_m", "sigma8"]
    np.testing.assert_array_equal(draws.to_numpy(), flow.sample(300, seed=3))

    rc, out, _ = _run(capsys, "stats", model, "--nsamples", 200, "--seed", 1, "-o", tmp_path / "stats.csv")
    assert rc == 0
    api = mf.marginal_stats(flow, nsamples=200, seed=1, progress=False)
    table = pd.read_csv(tmp_path / "stats.csv", float_precision="round_trip")
    np.testing.assert_allclose(table["D_KL"], np.asarray(api["D_KL"]), rtol=0)
    np.testing.assert_allclose(table["d_G"], np.asarray(api["d_G"]), rtol=0)
    row = next(line.split() for line in out.splitlines() if line.split()[:1] == ["D_KL"])
    mean, sd = float(row[1]), float(row[2])
    assert mean == pytest.approx(table["D_KL"].mean(), abs=1e-4)
    # the example's core marginal is the Gaussian MEAN[:2], COV[:2, :2] inside the prior box
    from margflow.examples import BOUNDS, COV

    log_volume = np.log(np.prod([BOUNDS[p][1] - BOUNDS[p][0] for p in ("Omega_m", "sigma8")]))
    exact = -(1 + np.log(2 * np.pi) + 0.5 * np.log(np.linalg.det(COV[:2, :2]))) + log_volume
    assert abs(mean - exact) < 4 * sd


def test_fit_reads_a_whitespace_table_and_a_polychord_root(chains, tmp_path, capsys):
    d, samples = chains
    rc, out, _ = _run(capsys, "fit", d / "run.txt", "--params", "Omega_m", "sigma8", "--weights", "weight",
                      "--estimator", "KDE", "-o", tmp_path / "k.mflow")  # fmt: skip
    assert rc == 0 and "KDE" in out
    assert mf.load(tmp_path / "k.mflow").params == ["Omega_m", "sigma8"]
    rc, out, err = _run(capsys, "fit", d / "pc", "--params", "Omega_m", "sigma8", "--bounds", *CORE_BOUNDS,
                        "--epochs", 3, "--quiet", "-o", tmp_path / "pc.mflow")  # fmt: skip
    assert rc == 0, err
    flow = mf.load(tmp_path / "pc.mflow")
    assert flow.logZ == pytest.approx(float(samples.logZ()), abs=1e-9)  # the nested-sampling evidence kept

    # from the model file alone, logZ is one number and the note says what the bars leave out
    rc, out, _ = _run(capsys, "stats", tmp_path / "pc.mflow", "--nsamples", 50, "--quiet")
    assert rc == 0 and "without its nested-sampling error" in out
    # with the run itself, the draws are marginal_stats' over anesthetic's nested-sampling weights
    from anesthetic import read_chains

    rc, out, _ = _run(capsys, "stats", tmp_path / "pc.mflow", "--samples", d / "pc", "--nsamples", 100,
                      "--seed", 2, "--quiet", "-o", tmp_path / "s.csv")  # fmt: skip
    assert rc == 0 and "without its nested-sampling error" not in out
    api = mf.marginal_stats(flow, samples=read_chains(str(d / "pc")), nsamples=100, seed=2, progress=False)
    table = pd.read_csv(tmp_path / "s.csv", float_precision="round_trip")
    for col in ("logZ", "D_KL", "d_G"):
        np.testing.assert_allclose(table[col], np.asarray(api[col]), rtol=0)
    assert table["logZ"].std() > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["fit", "{d}/nohead.csv", "-o", "x.mflow"], "no header row"),
        (["fit", "{d}/run.csv", "--params", "Omega_m", "foo", "-o", "x.mflow"], "unknown parameters ['foo']"),
        (["fit", "{d}/run.csv", "--weights", "w", "-o", "x.mflow"], "no weights column 'w'"),
        (["fit", "{d}/run.csv", "--bounds", "Omega_m=0.6:0.1", "-o", "x.mflow"], "lower bound must be below"),
        (["fit", "{d}/run.csv", "--bounds", "Omega_m=0.1", "-o", "x.mflow"], "write NAME=LOWER:UPPER"),
        (["fit", "{d}/run.csv", "--bounds", "Omega_m=a:b", "-o", "x.mflow"], "write NAME=LOWER:UPPER"),
        (["fit", "{d}/run.csv", "--params", "sigma8", "--bounds", "Omega_m=0:1", "-o", "x.mflow"], "not among"),
        (["fit", "{d}/run.csv", "--bounds", "Omega_m=0:1", "Omega_m=0:2", "-o", "x.mflow"], "given twice"),
        (
            ["fit", "{d}/run.csv", "--params", "Omega_m", "--bounds", "Omega_m=0.3:0.4", "-o", "x.mflow"],
            "outside [0.3, 0.4]",
        ),
        (["fit", "{d}/pc", "--weights", "weight", "-o", "x.mflow"], "carries its own weights"),
        (["fit", "{d}/run.csv", "--clusters", "2", "-o", "x.mflow"], "--clusters is for"),
        (["fit", "{d}/missing_root", "-o", "x.mflow"], "no chains root of that name"),
        (["sample", "{d}/missing.mflow", "-n", "3", "-o", "-"], "no model file"),
        (["sample", "{d}/k.mflow", "-n", "0", "-o", "-"], "-n must be a positive"),
        (["stats", "{d}/k.mflow"], "open bounds on ['Omega_m', 'sigma8']"),
        (["stats", "{d}/k.mflow", "--weights", "weight"], "weights column of the --samples table"),
        (["fit", "{d}/negw.csv", "--weights", "weight", "-o", "x.mflow"], "negative values"),
    ],
)
def test_bad_input_is_a_clear_error(chains, capsys, args, message):
    d, _ = chains
    if not (d / "k.mflow").exists():  # an unbounded model for the stats case
        assert main(["fit", str(d / "run.csv"), "--params", "Omega_m", "sigma8", "--weights", "weight",
                     "--estimator", "KDE", "-o", str(d / "k.mflow")]) == 0  # fmt: skip
        capsys.readouterr()
    rc, out, err = _run(capsys, *[a.format(d=d) for a in args])
    assert rc == 2
    assert message in err and err.startswith(f"margflow {args[0]}: error:")


def test_a_diverging_fit_exits_1_with_the_training_message(chains, tmp_path, capsys):
    d, _ = chains
    rc, _, err = _run(capsys, "fit", d / "run.csv", "--params", "Omega_m", "sigma8", "--weights", "weight",
                      "--learning-rate", 1e30, "--epochs", 5, "--quiet", "-o", tmp_path / "x.mflow")  # fmt: skip
    assert rc == 1 and "margflow fit: error: the loss became" in err and "Lower learning_rate" in err
    assert not (tmp_path / "x.mflow").exists()
