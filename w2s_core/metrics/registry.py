"""Registry of scalar metrics ``fn(probs (N, C), y (N,)) -> float`` (for tables and sweeps)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from w2s_core.metrics.classification import (
    accuracy,
    auroc,
    brier,
    ece,
    ece_equal_mass,
    mce,
    nll,
)
from w2s_core.registry import Registry

MetricFn = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class MetricEntry:
    """A named metric; ``higher_is_better`` tells tables and plots which way is good."""

    name: str
    fn: MetricFn
    higher_is_better: bool
    description: str


METRICS: Registry[MetricEntry] = Registry("metric")

for _entry in (
    MetricEntry("accuracy", accuracy, True, "fraction of examples whose argmax is the gold label"),
    MetricEntry("ece", ece, False, "top-label expected calibration error, 15 uniform bins"),
    MetricEntry("ece_em", ece_equal_mass, False, "top-label ECE, 15 equal-mass bins"),
    MetricEntry("mce", mce, False, "maximum calibration error over 15 uniform bins"),
    MetricEntry("brier", brier, False, "multi-class Brier score, sum over classes (0..2)"),
    MetricEntry("nll", nll, False, "negative log-likelihood of the gold label (nats)"),
    MetricEntry("auroc", auroc, True, "AUROC; macro one-vs-rest for more than 2 classes"),
):
    METRICS.register(_entry.name, _entry)
