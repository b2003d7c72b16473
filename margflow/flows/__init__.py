"""Normalising-flow estimators and the shared training loop."""

from margflow.flows.base import FlowEstimator
from margflow.flows.maf import MAF
from margflow.flows.realnvp import RealNVP
from margflow.flows.spline import SplineFlow
from margflow.flows.train import History, TrainingDivergedError, train

__all__ = ["FlowEstimator", "MAF", "RealNVP", "SplineFlow", "History", "TrainingDivergedError", "train"]
