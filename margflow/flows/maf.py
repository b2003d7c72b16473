"""Masked autoregressive flow: a chain of TFP MaskedAutoregressiveFlow bijectors."""

from __future__ import annotations

from functools import cache

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from margflow.bounds import ndtr, ndtri
from margflow.flows.base import FlowEstimator
from margflow.flows.made import MADE

__all__ = ["MAF"]

tfb = tfp.bijectors
tfd = tfp.distributions

#: log-scales pass through ``c * tanh(s / c)``: unchanged for |s| << c, never
#: beyond ±c, so one layer cannot blow a point to overflow
_LOG_SCALE_CLAMP = 5.0

#: base distributions of a flow
BASES = ("normal", "student_t")
#: a Student-t base starts at these degrees of freedom (near the Gaussian) and learns them
_DOF_START = 30.0
#: and keeps them in this range (below 0.5 the tails are heavier than any posterior we have met;
#: above 10^4 the base is the Gaussian to float32 precision)
_DOF_RANGE = (0.5, 1.0e4)


class MAF(FlowEstimator):
    """Masked autoregressive flow on weighted samples in a bounded box.

    ``n_layers`` TFP ``MaskedAutoregressiveFlow`` bijectors, each driven by a
    MADE (the masks of TFP's ``AutoregressiveNetwork``) that outputs a shift
    and a log-scale per parameter, with a fixed permutation of the parameters
    between layers. The output layer of every network starts at zero, so the
    untrained flow is the identity and the estimator is the weighted Gaussian
    fit of the samples in the transformed space (probit/logit/log of the
    bounds).

    Density, training loss, sampling and ``transform`` run margflow's fused
    functions of the flat weight vector (the same arithmetic as the TFP chain,
    tested equal, but one compiled program shared by every flow of the same
    architecture); the TFP chain itself stays available as the reference
    model.

    Parameters
    ----------
    samples : ndarray (n, d), pandas.DataFrame or anesthetic samples
    params : list of str, optional
        Columns to model, by name.
    bounds : None, "auto", (d, 2) array or dict
        Prior bounds; ``None`` (default) is unbounded.
    weights : array_like, optional
        Sample weights (taken from anesthetic samples when given those).
    n_layers : int
        Number of autoregressive layers.
    hidden : tuple of int
        Hidden units of each MADE. The default (32, 32) fitted the four
        benchmark targets as well as margarine's (50, 50) in ~40% less time
        (``benchmarks/RESULTS.md``, 10,000 samples each).
    activation : str
        Activation of the hidden layers (a ``tf.nn`` name). Smooth ones
        (``"silu"``, ``"gelu"``) fit a density's shape from its values
        (``fit(loss="kl_logvar")``) closer than ``"tanh"``: on the banana of
        Table I (10^5 samples), Jeffreys divergence 2.2e-5 with ``"silu"``
        against 1.4e-4 with ``"tanh"`` (side runs, in the notes of
        benchmarks/RESULTS-table1.md).
    base : {"normal", "student_t"}
        The base distribution. ``"student_t"``: a standard multivariate
        Student-t whose degrees of freedom are learned with the weights
        (starting at 30). Affine and spline layers are linear far out, so a
        flow keeps its base's tails: a normal base cannot follow a
        heavy-tailed posterior (a power-law tail), a Student-t base can. On
        the bivariate t_3 of Table I the NLL fit learns ν = 3.00 and the
        Jeffreys divergence falls from 4.6e-3 to 6.8e-5
        (benchmarks/RESULTS-table1.md). ``sample``,
        ``transform`` and ``inverse_transform`` keep the standard normal (and
        the unit hypercube) on the outside: the base is reached through the
        multivariate t's Rosenblatt map. See :attr:`dof`.
    transform : {"probit", "logit"}
        Map from a two-sided prior range to the real line.
    seed : int
        Seeds the initial weights, permutations, split and shuffling.

    Examples
    --------
    >>> import numpy as np, margflow as mf
    >>> x = np.random.default_rng(0).normal(size=(500, 2))
    >>> flow = mf.MAF(x, params=["a", "b"], n_layers=2, hidden=(16, 16))
    >>> hist = flow.fit(epochs=5, progress=False)
    >>> flow.log_prob(x[:3]).shape, flow.sample(4, seed=1).shape
    ((3,), (4, 2))
    """

    def __init__(
        self,
        samples,
        *,
        params=None,
        bounds=None,
        weights=None,
        n_layers=6,
        hidden=(32, 32),
        activation="tanh",
        base="normal",
        transform="probit",
        blend="auto",
        seed=0,
    ):
        super().__init__(
            samples, params=params, bounds=bounds, weights=weights, transform=transform, blend=blend, seed=seed
        )
        self._init_architecture(n_layers, hidden, activation, base=base)

    def _init_architecture(self, n_layers, hidden, activation, base="normal", **extra):
        """Validate the architecture, draw the permutations, build, and set the initial weights."""
        name = type(self).__name__
        if int(n_layers) != n_layers or n_layers < 1:
            raise ValueError(f"n_layers must be a positive integer, got {n_layers!r}")
        hidden = [int(h) for h in np.atleast_1d(hidden)]
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden must be a sequence of positive integers, got {hidden!r}")
        if self.dim < 2:
            raise ValueError(f"{name} needs at least 2 parameters; use mf.KDE for a single parameter")
        if base not in BASES:
            raise ValueError(f"base must be one of {list(BASES)}, got {base!r}")
        perms = self._permutations(int(n_layers), np.random.default_rng(self.seed))
        self.config = {
            "n_layers": int(n_layers),
            "hidden": hidden,
            "activation": str(activation),
            "base": base,
            **extra,
            "permutations": [p.tolist() for p in perms],
            "seed": self.seed,
        }
        self._build(self.config)
        self._variables[0].assign(self._graph.init(self.seed))

    def _permutations(self, n_layers, rng):
        """The fixed permutation of the parameters between layers: reversed, and random every
        other layer when d > 2."""
        d = self.dim
        return [np.arange(d)[::-1] if d == 2 or i % 2 == 0 else rng.permutation(d) for i in range(n_layers - 1)]

    def _settings(self):
        arch = {k: self.config[k] for k in ("n_layers", "hidden", "activation")}
        return {**super()._settings(), **arch, "base": self.base}

    def _make_graph(self, config):
        return _maf_graph(
            self.dim, config["n_layers"], tuple(config["hidden"]), config["activation"], config.get("base", "normal")
        )

    def _build(self, config):
        d = self.dim
        self._graph = graph = self._make_graph(config)
        flat = tf.Variable(tf.zeros([graph.size], self._dtype), name="flow_weights")
        self._variables = [flat]
        perms = np.array(config["permutations"], dtype=np.int32).reshape(-1, d)
        self._consts = (tf.constant(perms), tf.constant(np.argsort(perms, axis=1).astype(np.int32)))
        layers = []
        for i in range(config["n_layers"]):
            layers.append(graph.tfp_layer(flat, i))
            if i < config["n_layers"] - 1:
                layers.append(tfb.Permute(permutation=config["permutations"][i]))
        # tfb.Chain applies the last element first: base → layer 0 → ... → z
        self._bijector = tfb.Chain(layers[::-1])
        self._make_distribution()


class _MAFGraph:
    """The arithmetic of one MAF architecture, as pure functions of its weights.

    One instance per architecture (cached), so the functions traced from it are
    shared by every flow with that architecture. Subclasses change the
    element-wise map of a layer (``_map_forward``, ``_map_inverse``) and the
    number of network outputs per parameter.

    The base is a standard normal, or a standard multivariate Student-t whose
    log degrees of freedom are the first flat weight (``base="student_t"``).
    ``forward`` and ``inverse`` map to and from a standard *normal* ``eps`` in
    either case (for the Student-t, through its Rosenblatt map, in float64),
    so sampling, ``transform`` and ``inverse_transform`` are the same for both;
    ``log_prob`` uses the base density directly.
    """

    n_outputs = 2
    #: sampling inverts each layer coordinate by coordinate (a loop XLA cannot differentiate)
    sequential_forward = True

    def __init__(self, d, n_layers, hidden, activation, base="normal"):
        self.d, self.n_layers, self.base = d, n_layers, base
        self.n_base = 1 if base == "student_t" else 0
        self.made = self._network(hidden, activation)
        self.size = self.n_base + n_layers * self.made.size

    def _network(self, hidden, activation):
        """The network of one layer (one for every layer: they differ in their weights only)."""
        return MADE(self.d, hidden, activation, params=self.n_outputs)

    def init(self, seed):
        """Initial flat weights: every network's output layer zero, so the flow is the identity
        (a Student-t base starts at ``_DOF_START`` degrees of freedom)."""
        head = [np.full(self.n_base, np.log(_DOF_START), np.float32)]
        return np.concatenate(head + [self.made.init(np.random.default_rng([seed, i])) for i in range(self.n_layers)])

    def _layer_weights(self, flat):
        return [self.made.split(c) for c in tf.split(flat[self.n_base :], self.n_layers)]

    def dof(self, flat):
        """The Student-t base's degrees of freedom, in ``flat``'s float type."""
        lo, hi = np.log(_DOF_RANGE[0]), np.log(_DOF_RANGE[1])
        return tf.exp(tf.clip_by_value(flat[0], lo, hi))

    # -- the base ------------------------------------------------------------
    def _student_t_log_prob(self, flat, x):
        """log-density of the Student-t base at ``x`` (the normal base's is written in ``log_prob``)."""
        d = self.d
        r2 = tf.reduce_sum(x * x, axis=-1)
        nu = self.dof(flat)
        # the normalisation in float64: at large ν the two lgammas cancel to many digits
        nu64 = tf.cast(nu, tf.float64)
        const = tf.math.lgamma(0.5 * (nu64 + d)) - tf.math.lgamma(0.5 * nu64) - 0.5 * d * tf.math.log(nu64 * np.pi)
        return tf.cast(const, x.dtype) - 0.5 * (nu + d) * tf.math.log1p(r2 / nu)

    def _from_normal(self, flat, eps):
        """Standard normal ``eps`` → base point (the identity for the normal base).

        For the Student-t, the inverse Rosenblatt map of the multivariate
        t_ν: ``x_k = T⁻¹_{ν+k}(Φ(eps_k)) √((ν + Σ_{j<k} x_j²) / (ν + k))``
        (k from 0), each tail from its own side so that no precision is lost
        next to 1.
        """
        if self.base == "normal":
            return eps
        f64 = tf.float64
        e = tf.cast(eps, f64)
        nu = tf.cast(self.dof(flat), f64)
        s, out = tf.zeros_like(e[:, 0]), []
        for k in range(self.d):
            nuk = nu + k
            q = tfd.StudentT(nuk, tf.constant(0.0, f64), tf.constant(1.0, f64)).quantile(ndtr(-tf.abs(e[:, k])))
            x = -tf.sign(e[:, k]) * q * tf.sqrt((nu + s) / nuk)
            out.append(x)
            s = s + x * x
        return tf.cast(tf.stack(out, axis=-1), eps.dtype)

    def _to_normal(self, flat, x):
        """Base point → standard normal ``eps`` and ``log|det ∂eps/∂x|`` (the Rosenblatt map)."""
        if self.base == "normal":
            return x, tf.zeros_like(x[:, 0])
        f64 = tf.float64
        xx = tf.cast(x, f64)
        nu = tf.cast(self.dof(flat), f64)
        s, eps, logdet = tf.zeros_like(xx[:, 0]), [], 0.0
        for k in range(self.d):
            nuk = nu + k
            c = tf.sqrt((nu + s) / nuk)
            y = xx[:, k] / c
            t = tfd.StudentT(nuk, tf.constant(0.0, f64), tf.constant(1.0, f64))
            e = -tf.sign(y) * ndtri(tf.exp(t.log_cdf(-tf.abs(y))))
            logdet += t.log_prob(y) - tf.math.log(c) + 0.5 * e * e + 0.5 * np.log(2 * np.pi)
            eps.append(e)
            s = s + xx[:, k] * xx[:, k]
        return tf.cast(tf.stack(eps, axis=-1), x.dtype), tf.cast(logdet, x.dtype)

    def reference_base(self, flat, dtype):
        """The base as a TFP distribution (for the reference chain)."""
        d = self.d
        if self.base == "normal":
            return tfd.MultivariateNormalDiag(loc=tf.zeros(d, dtype), scale_diag=tf.ones(d, dtype))
        return tfd.MultivariateStudentTLinearOperator(
            df=tfp.util.DeferredTensor(flat, lambda f: self.dof(f), shape=[]),
            loc=tf.zeros(d, dtype),
            scale=tf.linalg.LinearOperatorIdentity(d, dtype=dtype),
        )

    # -- the layers ------------------------------------------------------------
    def _shift_log_scale(self, weights, y):
        out = self.made(weights, y)
        return out[..., 0], _LOG_SCALE_CLAMP * tf.tanh(out[..., 1] / _LOG_SCALE_CLAMP)

    def _map_forward(self, weights, cond, u):
        """Layer map base-side ``u`` → z-side, with its parameters from the network at ``cond``."""
        shift, log_scale = self._shift_log_scale(weights, cond)
        return u * tf.exp(log_scale) + shift

    def _map_inverse(self, weights, y):
        """Layer map z-side ``y`` → base side in one pass, and ``log|det ∂u/∂y|``."""
        shift, log_scale = self._shift_log_scale(weights, y)
        return (y - shift) * tf.exp(-log_scale), -tf.reduce_sum(log_scale, axis=-1)

    def tfp_layer(self, flat, i):
        """Layer ``i`` as a TFP bijector (the reference the fused functions are tested against)."""

        def fn(y):
            return self._shift_log_scale(self._layer_weights(flat)[i], y)

        return tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=fn)

    def forward(self, variables, consts, eps):
        """Standard normal ``eps`` → z, the sampling direction."""
        return self._flow_forward(variables, consts, self._from_normal(variables[0], eps))

    def inverse(self, variables, consts, z):
        """z → standard normal ``eps`` and ``log|det ∂eps/∂z|``."""
        x, logdet = self._flow_inverse(variables, consts, z)
        eps, ld = self._to_normal(variables[0], x)
        return eps, logdet + ld

    def log_prob(self, variables, consts, z):
        """log q(z)."""
        x, logdet = self._flow_inverse(variables, consts, z)
        if self.base == "normal":  # in the float32 order of the earlier releases: results reproduce to the bit
            return logdet - 0.5 * tf.reduce_sum(x * x, axis=-1) - 0.5 * self.d * np.log(2 * np.pi)
        return logdet + self._student_t_log_prob(variables[0], x)

    def _flow_forward(self, variables, consts, eps):
        """Base point → z.

        Each layer is inverted by ``d`` passes of its network (pass ``k`` fixes
        coordinate ``k``), as TFP's ``MaskedAutoregressiveFlow.forward`` does.
        """
        (flat,), (perms, _) = variables, consts
        weights = self._layer_weights(flat)
        y = eps
        for i in range(self.n_layers):
            if i > 0:
                y = tf.gather(y, perms[i - 1], axis=-1)
            y = self._layer_forward(weights[i], y)
        return y

    def _layer_forward(self, weights, u):
        def body(k, x):
            return k + 1, self._map_forward(weights, x, u)

        _, x = tf.while_loop(
            lambda k, x: k < self.d, body, (tf.constant(0), tf.zeros_like(u)), maximum_iterations=self.d
        )
        return x

    def _flow_inverse(self, variables, consts, z):
        """z → base point through every layer in one pass, and ``log|det ∂x/∂z|``."""
        (flat,), (_, inv_perms) = variables, consts
        weights = self._layer_weights(flat)
        y, logdet = z, 0.0
        for i in reversed(range(self.n_layers)):
            y, ld = self._map_inverse(weights[i], y)
            logdet += ld
            if i > 0:
                y = tf.gather(y, inv_perms[i - 1], axis=-1)
        return y, logdet


@cache
def _maf_graph(d, n_layers, hidden, activation, base="normal"):
    return _MAFGraph(d, n_layers, hidden, activation, base)
