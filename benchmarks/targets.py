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


TARGETS = {"banana": lambda: Banana(20.0), "himmelblau": Himmelblau, "student_t": StudentT, "bananas8d": RotatedBananas}
