"""margflow: density estimators for marginal Bayesian statistics, in TensorFlow.

Fit a density estimator to weighted posterior samples of the parameters you
care about (nuisance parameters marginalised out), then use it for
``log_prob``, sampling, a unit-hypercube prior transform, and the marginal
statistics built on them.
"""

import os as _os

# quiet TensorFlow's C++ start-up log unless the user asked for it
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from margflow import _torch  # noqa: E402

_torch.prepare()  # before TensorFlow: see margflow/_torch.py

from margflow._version import __version__  # noqa: E402
from margflow.bounds import parse_bounds  # noqa: E402
from margflow.data import SampleData, load_samples  # noqa: E402
from margflow.estimator import DensityEstimator  # noqa: E402
from margflow.evidence import EvidenceResult, importance_evidence, reweight  # noqa: E402
from margflow.flows import MAF, History, RealNVP, SplineFlow, TrainingDivergedError  # noqa: E402
from margflow.io import ModelFileError, load, read_metadata  # noqa: E402
from margflow.kde import KDE  # noqa: E402
from margflow.likelihood import JointLikelihood, NuisanceFreeLikelihood  # noqa: E402
from margflow.mixture import Ensemble  # noqa: E402
from margflow.piecewise import PiecewiseMAF  # noqa: E402
from margflow.priors import FlowPrior, LogPosterior, emcee_sampler, separated_modes  # noqa: E402
from margflow.selection import ModelSelection, select_model  # noqa: E402
from margflow.sequential import SequentialResult, compare, information_limit, sequential  # noqa: E402
from margflow.stats import marginal_stats  # noqa: E402

__all__ = [
    "__version__",
    "MAF",
    "RealNVP",
    "SplineFlow",
    "KDE",
    "NuisanceFreeLikelihood",
    "JointLikelihood",
    "PiecewiseMAF",
    "Ensemble",
    "FlowPrior",
    "LogPosterior",
    "emcee_sampler",
    "separated_modes",
    "select_model",
    "sequential",
    "SequentialResult",
    "compare",
    "information_limit",
    "ModelSelection",
    "DensityEstimator",
    "History",
    "TrainingDivergedError",
    "ModelFileError",
    "SampleData",
    "load",
    "load_samples",
    "importance_evidence",
    "reweight",
    "EvidenceResult",
    "marginal_stats",
    "parse_bounds",
    "read_metadata",
]
