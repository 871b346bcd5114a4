"""Experiments: each method's claim tested against its baseline, written up as a report."""

from .base import EXPERIMENTS, Experiment, ExperimentContext, register, run_experiment
from .report import Report, Table, fmt_pm, mean_std

__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "ExperimentContext",
    "Report",
    "Table",
    "fmt_pm",
    "mean_std",
    "register",
    "run_experiment",
]
