"""MADE networks as pure functions of one flat weight vector.

A masked autoencoder for distribution estimation (Germain et al. 2015) with
the degrees and masks of TFP's ``tfb.AutoregressiveNetwork`` (left-to-right
input order, "equal" hidden degrees, ``params`` outputs per input laid out
input-major), so the weights of one can be copied into the other and give the
same outputs (tested).

The weights of every layer of every network of a flow live in one flat
vector. The loss and the network are then functions of ``(flat, x)`` alone:
one traced TensorFlow graph serves every flow of the same architecture (no
retracing for a second fit, a bootstrap, a cluster of a piecewise flow), and
Adam updates one tensor instead of dozens.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["MADE", "made_degrees"]


def made_degrees(d, hidden):
    """Degrees of the input and hidden units, as TFP assigns them."""
    degrees = [np.arange(1, d + 1)]
    for units in hidden:
        lowest = min(int(degrees[-1].min()), d - 1)
        degrees.append(np.maximum(lowest, np.ceil(np.arange(1, units + 1) * (d - 1) / (units + 1)).astype(int)))
    return degrees


class MADE:
    """Shapes, masks, initial weights and the forward pass of one MADE.

    Parameters
    ----------
    d : int
        Inputs (and outputs per parameter).
    hidden : sequence of int
        Hidden units per layer.
    activation : str
        Name of a ``tf.nn`` / ``tf.math`` activation for the hidden layers.
    params : int
        Outputs per input (2: shift and log-scale).
    """

    def __init__(self, d, hidden, activation="tanh", params=2):
        self.d, self.hidden, self.params = int(d), tuple(int(h) for h in hidden), int(params)
        self.activation = str(activation)
        self._act = _activation(self.activation)
        self.masks_np = [m.astype(np.float32) for m in self._masks()]
        self.shapes = []
        for m in self.masks_np:
            self.shapes += [m.shape, (m.shape[1],)]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.size = sum(self.sizes)

    def _masks(self):
        """The connectivity of each layer's kernel, input to output: autoregressive degrees."""
        degrees = made_degrees(self.d, self.hidden)
        masks = [(a[:, None] <= b[None, :]) for a, b in zip(degrees[:-1], degrees[1:])]
        out = degrees[-1][:, None] < degrees[0][None, :]
        masks.append(np.repeat(out, self.params, axis=1))  # column i*params + p belongs to input i
        return masks

    def init(self, rng):
        """Flat float32 weights: Glorot-uniform masked hidden kernels, zero biases, zero output layer.

        The zero output layer makes the network output exactly zero, so a flow
        starts as the identity.
        """
        parts = []
        for k, m in enumerate(self.masks_np):
            fan_in, fan_out = m.shape
            if k < len(self.masks_np) - 1:
                lim = np.sqrt(6.0 / (fan_in + fan_out))
                w = rng.uniform(-lim, lim, m.shape) * m
            else:
                w = np.zeros(m.shape)
            parts += [w.ravel(), np.zeros(fan_out)]
        return np.concatenate(parts).astype(np.float32)

    def split(self, flat):
        """Kernels and biases ``[W0, b0, W1, b1, ...]`` from a flat vector of length ``size``."""
        return [tf.reshape(p, s) for p, s in zip(tf.split(flat, self.sizes), self.shapes)]

    def __call__(self, weights, x):
        """Network outputs for rows ``x`` (n, d), shape ``(n, d, params)``; ``weights`` from :meth:`split`."""
        h = x
        n = len(self.masks_np)
        for k in range(n):
            # masks are constants of whichever graph is being built
            h = tf.matmul(h, weights[2 * k] * self.masks_np[k]) + weights[2 * k + 1]
            if k < n - 1:
                h = self._act(h)
        return tf.reshape(h, [-1, self.d, self.params])


def _activation(name):
    fn = getattr(tf.nn, name, None) or getattr(tf.math, name, None)
    if fn is None or not callable(fn):
        raise ValueError(f"unknown activation {name!r}; use a tf.nn name such as 'tanh', 'relu', 'elu' or 'gelu'")
    return fn
