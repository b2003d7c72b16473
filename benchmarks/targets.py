"""Benchmark targets with exact normalised log-densities and exact samplers."""

import numpy as np
from scipy.special import logsumexp
from scipy.stats import multivariate_t, ortho_group


class Banana:
    """p ∝ exp(-(a1 - 1)^2 - c (a1^2 - a2)^2); normaliser π / sqrt(c)."""

    def __init__(self, c=20.0):
        self.c, self.dim, self.name = c, 2, f"banana (c2={c:g})"

    def logpdf(self, x):
        return -((x[:, 0] - 1) ** 2) - self.c * (x[:, 0] ** 2 - x[:, 1]) ** 2 - np.log(np.pi / np.sqrt(self.c))

    def sample(self, n, rng):
        a1 = rng.normal(1, np.sqrt(0.5), n)
        return np.column_stack([a1, rng.normal(a1**2, np.sqrt(0.5 / self.c))])


class Himmelblau:
    """p ∝ exp(-[(a1^2 + a2 - 11)^2 + (a1 + a2^2 - 7)^2] / 100), normalised on a grid."""

    name, dim, box = "Himmelblau", 2, 8.0

    def _f(self, x):
        return -(((x[:, 0] ** 2 + x[:, 1] - 11) ** 2 + (x[:, 0] + x[:, 1] ** 2 - 7) ** 2) / 100)

    def __init__(self):
        g = np.linspace(-self.box, self.box, 3201)
        xx, yy = np.meshgrid(g, g)
        f = self._f(np.column_stack([xx.ravel(), yy.ravel()]))
        h = g[1] - g[0]
        self.log_norm = logsumexp(f) + 2 * np.log(h)  # mass beyond ±8 is below e^-16 of the peak

    def logpdf(self, x):
        return self._f(x) - self.log_norm

    def sample(self, n, rng):
        out = []
        while sum(len(o) for o in out) < n:  # rejection from the box; max of exp(f) is 1
            y = rng.uniform(-self.box, self.box, size=(4 * n, 2))
            out.append(y[np.log(rng.uniform(size=4 * n)) < self._f(y)])
        return np.concatenate(out)[:n]


class StudentT:
    """Bivariate Student-t, ν = 3, location (1, 1), scale [[4, 4.8], [4.8, 9]]."""

    name, dim = "Student-t (nu=3)", 2

    def __init__(self):
        self.dist = multivariate_t(loc=[1.0, 1.0], shape=[[4.0, 4.8], [4.8, 9.0]], df=3)

    def logpdf(self, x):
        return self.dist.logpdf(x)

    def sample(self, n, rng):
        return self.dist.rvs(n, random_state=rng)


class RotatedBananas:
    """Four independent bananas (c2 = 5, 10, 20, 40) rotated by a fixed random orthogonal matrix."""

    name, dim = "8-D rotated bananas", 8

    def __init__(self):
        self.parts = [Banana(c) for c in (5.0, 10.0, 20.0, 40.0)]
        self.rot = ortho_group.rvs(8, random_state=0)

    def logpdf(self, x):
        y = x @ self.rot  # y = R^T x, |det R| = 1
        return sum(b.logpdf(y[:, 2 * i : 2 * i + 2]) for i, b in enumerate(self.parts))

    def sample(self, n, rng):
        y = np.column_stack([b.sample(n, rng) for b in self.parts])
        return y @ self.rot.T


class _GridTarget:
    """A 2-D density given unnormalised (``_f``), normalised on a grid over ``box``, sampled by rejection.

    ``_f`` must be at most ``log_max`` everywhere, and the mass outside the box negligible.
    """

    box = ((-4.0, 4.0), (-4.0, 4.0))
    log_max = 0.0
    dim = 2

    def __init__(self):
        (a, b), (c, d) = self.box
        gx, gy = np.linspace(a, b, 2001), np.linspace(c, d, 2001)
        xx, yy = np.meshgrid(gx, gy)
        f = self._f(np.column_stack([xx.ravel(), yy.ravel()])).reshape(xx.shape)
        # trapezoid weights in log space
        wx = np.full(len(gx), gx[1] - gx[0])
        wx[[0, -1]] /= 2
        wy = np.full(len(gy), gy[1] - gy[0])
        wy[[0, -1]] /= 2
        self.log_norm = logsumexp(f + np.log(wy)[:, None] + np.log(wx)[None, :])

    def logpdf(self, x):
        return self._f(x) - self.log_norm

    def sample(self, n, rng):
        (a, b), (c, d) = self.box
        out = []
        while sum(len(o) for o in out) < n:
            y = np.column_stack([rng.uniform(a, b, 8 * n), rng.uniform(c, d, 8 * n)])
            out.append(y[np.log(rng.uniform(size=8 * n)) < self._f(y) - self.log_max])
        return np.concatenate(out)[:n]


class TwoMoons(_GridTarget):
    """log p ∝ -½((|z| - 2)/0.2)² - ½((|z0| - 2)/0.3)² + log(1 + exp(-4|z0|/0.09))."""

    name, log_max = "Two Moons", np.log(2.0)
    box = ((-3.5, 3.5), (-3.0, 3.0))

    def _f(self, x):
        r = np.hypot(x[:, 0], x[:, 1])
        a = np.abs(x[:, 0])
        return -0.5 * ((r - 2) / 0.2) ** 2 - 0.5 * ((a - 2) / 0.3) ** 2 + np.log1p(np.exp(-4 * a / 0.09))


class EightGaussians:
    """Equal mixture of 8 Gaussians on the circle of radius 2, sigma = (2/3) sin(pi/8)."""

    name, dim = "circle of 8 Gaussians", 2

    def __init__(self):
        angles = 2 * np.pi * np.arange(8) / 8
        self.centres = 2.0 * np.column_stack([np.cos(angles), np.sin(angles)])
        self.sigma = 2.0 / 3.0 * np.sin(np.pi / 8)

    def logpdf(self, x):
        d2 = ((x[:, None, :] - self.centres[None]) ** 2).sum(-1)
        return logsumexp(-d2 / (2 * self.sigma**2), axis=1) - np.log(8 * 2 * np.pi * self.sigma**2)

    def sample(self, n, rng):
        return self.centres[rng.integers(0, 8, n)] + self.sigma * rng.normal(size=(n, 2))


class TwoRings(_GridTarget):
    """Two rings of radii 1 and 2, sigma = 1/8: p ∝ Σ_r exp(-½((|z| - r)/σ)²), normalised on a grid."""

    name = "two rings"
    box = ((-3.0, 3.0), (-3.0, 3.0))

    def _f(self, x):
        r = np.hypot(x[:, 0], x[:, 1])
        s = 1.0 / 8.0
        return np.logaddexp(-0.5 * ((r - 1) / s) ** 2, -0.5 * ((r - 2) / s) ** 2)


TARGETS = {"banana": lambda: Banana(20.0), "himmelblau": Himmelblau, "student_t": StudentT, "bananas8d": RotatedBananas}
MULTIMODAL = {"two_moons": TwoMoons, "eight_gaussians": EightGaussians, "two_rings": TwoRings}
