"""Geometric agreement of answers, as llm-consortium 0.8.0 measures it (its ``geometry.py``).

The centroid is the mean of the answers' embedding vectors; each answer's distance to it is
``(1 - cosine similarity) / 2`` (0 same direction, 1 opposite, 1 for a zero vector); the
geometric confidence is ``1 - mean distance``, clipped to [0, 1]. An answer is an outlier when
its distance exceeds the mean by more than two standard deviations (three answers or more).
Reimplemented here so that a kernel computing it never imports llm_consortium.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["OUTLIER_STD", "Geometry", "cosine_distance", "geometry_of"]

OUTLIER_STD = 2.0
"""Upstream's outlier cut-off, in standard deviations above the mean distance."""


@dataclass(frozen=True)
class Geometry:
    """The geometric agreement of one set of answers."""

    confidence: float
    """``1 - mean cosine distance to the centroid``, in [0, 1]."""
    centroid: list[float]
    """The mean of the answers' vectors."""
    outliers: list[int]
    """Positions (in the order given) of the answers far from the centroid."""


def cosine_distance(vector: np.ndarray, centroid: np.ndarray) -> float:
    """``(1 - cosine similarity) / 2``; 1.0 when either vector is zero (no direction)."""
    left, right = float(np.linalg.norm(vector)), float(np.linalg.norm(centroid))
    if left == 0 or right == 0:
        return 1.0
    similarity = max(-1.0, min(1.0, float(np.dot(vector, centroid) / (left * right))))
    return (1.0 - similarity) / 2.0


def geometry_of(vectors: Sequence[Sequence[float]]) -> Geometry:
    """The centroid, geometric confidence and outliers of ``vectors`` (one per answer).

    Raises ``ValueError`` when there is no vector or their dimensions differ.
    """
    if not vectors:
        raise ValueError("geometry: no vectors to measure")
    sizes = sorted({len(v) for v in vectors})
    if len(sizes) > 1 or sizes[0] == 0:
        raise ValueError(f"geometry: vectors must share one non-zero dimension (got {sizes})")
    matrix = np.asarray(vectors, dtype=float)
    centroid = matrix.mean(axis=0)
    distances = np.array([cosine_distance(row, centroid) for row in matrix])
    confidence = max(0.0, min(1.0, 1.0 - float(distances.mean())))
    return Geometry(confidence, [float(x) for x in centroid], _outliers(matrix))


def _outliers(matrix: np.ndarray) -> list[int]:
    if len(matrix) < 3:
        return []
    centroid = matrix.mean(axis=0)
    distances = np.array([cosine_distance(row, centroid) for row in matrix])
    spread = float(distances.std())
    if spread == 0.0:
        return []
    cutoff = float(distances.mean()) + OUTLIER_STD * spread
    return [i for i, d in enumerate(distances.tolist()) if d > cutoff]
