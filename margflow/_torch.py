"""TensorFlow and a CUDA build of torch in one process.

A CUDA build of torch ships triton, and triton and TensorFlow both load LLVM.
If TensorFlow is loaded first, pocoMC training its flow then aborts the whole
process ("LLVM ERROR: ... registered more than once"). Loading
``torch._dynamo`` (which loads triton's LLVM) before TensorFlow avoids it, so
margflow does that before its own ``import tensorflow`` when triton is
installed, and warns when TensorFlow was imported earlier without it;
:func:`margflow.sequential` then refuses with that message rather than let the
process abort. A CPU build of torch has no triton: nothing is imported then
(triton's wheel installs on CPU machines too, and reproduces the abort there).
"""

from __future__ import annotations

import importlib.util
import sys
import warnings


def _has(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


PROBLEM = (
    "TensorFlow was imported before torch while triton (a CUDA build of torch) is installed: "
    "pocoMC training its flow in this process would abort with 'LLVM ERROR: ... registered more than once'"
)
FIX = "import margflow (or torch._dynamo) before tensorflow"


def hazard():
    """True where loading triton's LLVM now would abort the process: triton installed,
    TensorFlow loaded, ``torch._dynamo`` (which loads triton) not yet loaded."""
    return "tensorflow" in sys.modules and "torch._dynamo" not in sys.modules and _has("triton") and _has("torch")


def check_for_pocomc():
    """Raise a clear error, instead of the abort, before margflow runs pocoMC in such a process."""
    if hazard():
        raise RuntimeError(f"{PROBLEM}. Restart the Python process (the notebook kernel) and {FIX}")


def prepare():
    """Import ``torch._dynamo`` ahead of TensorFlow where triton is installed (see the module's text)."""
    if not (_has("triton") and _has("torch")):
        return
    if "torch._dynamo" in sys.modules:
        return
    if "tensorflow" in sys.modules:
        warnings.warn(f"{PROBLEM}. {FIX[0].upper()}{FIX[1:]}", stacklevel=3)
        return
    try:
        import torch._dynamo  # noqa: F401
    except Exception as exc:  # a broken torch must not stop margflow from importing
        warnings.warn(f"importing torch._dynamo ahead of TensorFlow failed ({exc!r})", stacklevel=3)
