"""margarine 1.x, on margflow: change one import and a margarine 1.4.2 script runs.

``from margarine.maf import MAF`` becomes ``from margflow.compat.margarine import MAF``
(or ``from margflow.compat.margarine.maf import MAF``); likewise ``KDE``,
``clusterMAF`` and ``calculate``. The constructors take margarine's keywords,
``train(epochs, patience, early_stop, loss_type)``, ``__call__(u)``,
``sample(length)``, ``log_prob``, ``log_like(params, logevidence, prior_de)``,
``save``/``load`` and ``calculate(de, prior_de).statistics()`` with its keys
behave as margarine's did, except where margarine was wrong:

- **training**: minibatches and margflow's shared loop; the weights of the
  best validation epoch are kept (margarine trained full-batch and, without
  early stopping, returned the last epoch). An epoch is a pass over the
  training rows.
- **outside the box** ``log_prob`` is ``-inf`` (margarine: NaN), and samples
  outside a given ``theta_min``/``theta_max`` are an error (margarine dropped
  them with a warning).
- **a guessed box is not a bound**: without ``theta_min``/``theta_max``
  margarine guessed the prior box from the sample range and bounded the flow
  by it. Here the same box is the uniform prior of ``calculate()`` and
  ``log_like`` (so those numbers mean what they did), with a warning that
  they depend on it, but the density is fit without that bound: a box that
  hugs the samples distorts the fit: on margarine's own test Gaussian the
  BMD came out +0.46 (rms 0.71) off with the MAF bounded by the guess and
  -0.06 (rms 0.14) without, over 30 data sets (benchmarks/RESULTS-compat.md).
- **error bars**: ``statistics()``'s lower and upper bounds are a 68% interval
  of :func:`margflow.marginal_stats`'s draws, not the spread of three
  estimates; the draws are kept in ``calculate.draws``.
- **clusterMAF**'s hypercube transform is deterministic and row by row
  (margarine drew each row's cluster at random, seeded by the first row), and
  without ``cluster_number`` the number of clusters is margflow's choice
  (silhouette score, 2 to 10).
- **files** are margflow model files, not pickles: ``save`` then ``load``
  reproduces ``log_prob`` exactly, and ``margflow.load`` reads them too.
  margarine's own pickles cannot be read.
- a misspelt keyword is a ``TypeError`` (margarine ignored it); results are
  float64 (margarine: float32); every class takes a ``seed``.

Each object's margflow estimator is its ``estimator`` attribute.
"""

from margflow.compat.margarine.clustered import clusterMAF
from margflow.compat.margarine.kde import KDE
from margflow.compat.margarine.maf import MAF
from margflow.compat.margarine.marginal_stats import calculate

__all__ = ["MAF", "KDE", "clusterMAF", "calculate"]
