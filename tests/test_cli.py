"""The command line: demo on the bundled run, info on a model file."""

import numpy as np

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
