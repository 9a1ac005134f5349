"""Dirichlet (evidential) read-outs of a Bayesian student, and densities for the dashboard.

EDL (Sensoy et al. 2018; METHOD.md §2): evidence e = g(z) ≥ 0, α = e + 1, S = Σ_c α_c.
Read-outs: expected probability p̂ = α / S, belief b_c = (α_c − 1) / S = e_c / S,
vacuity u = C / S, so that Σ_c b_c + u = 1.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from w2s_core.metrics.stats import binary_auroc


def _check_alpha(alpha: np.ndarray) -> np.ndarray:
    a = np.asarray(alpha, dtype=float)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"alpha must be (N, C) with N > 0, got {a.shape}")
    if not (a > 0).all():
        raise ValueError("Dirichlet parameters alpha must be > 0")
    return a


def dirichlet_readouts(alpha: np.ndarray) -> dict[str, np.ndarray]:
    """Per-example read-outs of Dir(α), α (N, C).

    Returns ``S`` = Σ_c α_c (N,), ``vacuity`` u = C / S (N,), ``belief`` b = (α − 1) / S (N, C)
    and ``prob`` = α / S (N, C). With α ≥ 1 (α = e + 1): b ≥ 0 and Σ_c b_c + u = 1.
    """
    a = _check_alpha(alpha)
    s = a.sum(axis=1)  # (N,)
    return {
        "S": s,
        "vacuity": a.shape[1] / s,  # (N,)
        "belief": (a - 1.0) / s[:, None],  # (N, C)
        "prob": a / s[:, None],  # (N, C)
    }


def dirichlet_summary(alpha: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Dataset-level Dirichlet summaries, predictions ŷ = argmax α.

    mean_S = mean Sᵢ; mean_vacuity = mean uᵢ; vacuity_correct / vacuity_wrong = mean uᵢ over
    ŷᵢ = yᵢ / ŷᵢ ≠ yᵢ (NaN if that group is empty); auroc_vacuity = AUROC of uᵢ as a detector
    of wrong predictions (1 = vacuity ranks every error above every hit; NaN if all correct or
    all wrong).
    """
    a = _check_alpha(alpha)
    t = np.asarray(y).astype(int)
    if t.shape != (a.shape[0],):
        raise ValueError(f"y must be ({a.shape[0]},), got {t.shape}")
    r = dirichlet_readouts(a)
    u = r["vacuity"]  # (N,)
    wrong = a.argmax(axis=1) != t  # (N,)
    nan = float("nan")
    return {
        "mean_S": float(r["S"].mean()),
        "mean_vacuity": float(u.mean()),
        "vacuity_correct": float(u[~wrong].mean()) if (~wrong).any() else nan,
        "vacuity_wrong": float(u[wrong].mean()) if wrong.any() else nan,
        "auroc_vacuity": binary_auroc(u, wrong),
    }


def beta_density(a: float, b: float, grid: np.ndarray) -> np.ndarray:
    """Beta(a, b) density on ``grid`` (G,): Γ(a+b)/(Γ(a)Γ(b)) x^(a−1) (1−x)^(b−1) (scipy)."""
    return stats.beta.pdf(np.asarray(grid, dtype=float), a, b)


def simplex_grid(n_grid: int) -> np.ndarray:
    """Centroids of the n_grid² equal small triangles that tile the 2-simplex → (n_grid², 3).

    Upward triangles (i, j), i + j ≤ n − 1, have centroid ((i + ⅓)/n, (j + ⅓)/n); downward ones,
    i + j ≤ n − 2, ((i + ⅔)/n, (j + ⅔)/n); the third coordinate is 1 − x₁ − x₂. All points are
    strictly inside the simplex, and each stands for area 1 / (2 n²) in (x₁, x₂) coordinates.
    """
    if n_grid < 1:
        raise ValueError(f"n_grid must be ≥ 1, got {n_grid}")
    i, j = np.meshgrid(np.arange(n_grid), np.arange(n_grid), indexing="ij")
    up = (i + j) <= n_grid - 1
    down = (i + j) <= n_grid - 2
    x1 = np.concatenate([i[up] + 1 / 3, i[down] + 2 / 3]) / n_grid  # (M,)
    x2 = np.concatenate([j[up] + 1 / 3, j[down] + 2 / 3]) / n_grid  # (M,)
    x3 = np.clip(1.0 - x1 - x2, 0.0, None)
    return np.stack([x1, x2, x3], axis=1)  # (M, 3)


def dirichlet_density_simplex(
    alpha: np.ndarray, n_grid: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """Dir(α) density on the 2-simplex for α (3,), for a ternary plot.

    Returns ``points`` (M, 3) from ``simplex_grid`` (M = n_grid²) and ``density`` (M,) =
    Γ(Σα)/Π Γ(α_c) Π x_c^(α_c − 1) (scipy.stats.dirichlet; density w.r.t. dx₁ dx₂), so
    Σ density / (2 n_grid²) = mean(density) / 2 ≈ 1 (midpoint rule over the simplex).
    """
    a = np.asarray(alpha, dtype=float).ravel()
    if a.shape != (3,) or not (a > 0).all():
        raise ValueError(f"alpha must be 3 positive numbers, got {alpha}")
    points = simplex_grid(n_grid)  # (M, 3)
    pts = points / points.sum(axis=1, keepdims=True)  # exact sums for scipy's simplex check
    density = stats.dirichlet.pdf(pts.T, a)  # scipy wants (3, M)
    return points, np.asarray(density, dtype=float)
