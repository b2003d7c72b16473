"""The documentation (docs/) builds without a single warning, the tutorials executed in it.

This is also the tutorials' test: myst-nb runs every notebook while building, and a cell
that raises (each tutorial asserts its numbers against exact answers) fails the build.
"""

import glob
import os
import subprocess
import sys

import margflow as mf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_docs_build_warning_free(tmp_path):
    out = tmp_path / "html"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    cmd += ["-d", str(tmp_path / "doctrees"), os.path.join(ROOT, "docs"), str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    assert run.returncode == 0, f"sphinx-build failed ({run.returncode}):\n{(run.stdout + run.stderr)[-8000:]}"

    # the API reference documents every public name
    api = (out / "api.html").read_text()
    missing = [n for n in mf.__all__ if n != "__version__" and f'id="margflow.{n}"' not in api]
    assert not missing, f"api.rst leaves out {missing}"

    # every notebook in tutorials/ is a page, rendered with its outputs
    notebooks = sorted(os.path.basename(p)[:-6] for p in glob.glob(os.path.join(ROOT, "tutorials", "*.ipynb")))
    assert len(notebooks) >= 5
    for name in notebooks:
        page = out / "tutorials" / f"{name}.html"
        assert page.exists(), f"tutorials/{name}.ipynb is not in docs/tutorials.md's toctree"
        assert page.read_text().count("cell_output") > 0, f"{name}: rendered without outputs"
