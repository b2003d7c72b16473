"""When XLA cannot compile: the one test that decides a fall-back to a plain graph.

Training (:mod:`margflow.flows.train`) and the estimators' compiled maps
(:mod:`margflow.estimator`) both run XLA-compiled and both fall back to an
uncompiled graph, with a warning, when this TensorFlow build cannot compile.
"""

from __future__ import annotations

import tensorflow as tf

#: the errors a failed XLA compilation raises (catch these, then ask :func:`is_compile_failure`)
ERRORS = (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.NotFoundError)


def is_compile_failure(exc):
    """True if ``exc`` (one of :data:`ERRORS`) reports that XLA could not compile, not a failure of the computation."""
    message = str(exc)
    return "XLA" in message or "jit" in message.lower()
