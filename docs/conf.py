"""Sphinx configuration: ``sphinx-build -W -b html docs docs/_build/html`` (the test suite runs it)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))
import margflow  # noqa: E402  (sets up the TensorFlow/torch import order before autodoc imports anything)

project = "margflow"
author = "the margflow developers"
copyright = "2026, the margflow developers"
release = margflow.__version__
version = release

extensions = ["sphinx.ext.autodoc", "sphinx.ext.mathjax", "sphinx.ext.viewcode", "numpydoc", "myst_nb"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "tutorials/README.md", "**.ipynb_checkpoints"]

html_theme = "sphinx_rtd_theme"
html_title = f"margflow {release}"

# the API reference: numpydoc sections, members in source order, no duplicate class-member tables
autodoc_member_order = "bysource"
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_xref_param_type = False

# the tutorials are executed as the docs are built (the test suite's docs build is their test):
# a cell that raises, an assert that fails, fails the build
nb_execution_mode = "force"
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
myst_enable_extensions = ["dollarmath"]
