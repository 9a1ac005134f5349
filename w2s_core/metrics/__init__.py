"""Metrics: pure numpy functions (probs (N, C), labels (N,)) → numbers, arrays, DataFrames."""

from w2s_core.metrics.agreement import (
    cohen_kappa_matrix,
    fleiss_kappa,
    pairwise_agreement,
    teacher_set_summary,
    vote_entropy,
)
from w2s_core.metrics.classification import (
    accuracy,
    auroc,
    brier,
    ece,
    ece_equal_mass,
    mce,
    nll,
    pgr,
    pgr_defined,
    reliability_table,
    run_metrics,
)
from w2s_core.metrics.dirichlet import dirichlet_readouts, dirichlet_summary
from w2s_core.metrics.intervals import paired_summary, summarize_runs
from w2s_core.metrics.registry import METRICS, MetricEntry
from w2s_core.metrics.stats import mean_std_ci
from w2s_core.metrics.utterance_bootstrap import paired_f1_difference, resampled_f1

__all__ = [
    "METRICS",
    "MetricEntry",
    "accuracy",
    "auroc",
    "brier",
    "cohen_kappa_matrix",
    "dirichlet_readouts",
    "dirichlet_summary",
    "ece",
    "ece_equal_mass",
    "fleiss_kappa",
    "mce",
    "mean_std_ci",
    "nll",
    "paired_f1_difference",
    "paired_summary",
    "pairwise_agreement",
    "pgr",
    "pgr_defined",
    "reliability_table",
    "resampled_f1",
    "run_metrics",
    "summarize_runs",
    "teacher_set_summary",
    "vote_entropy",
]
