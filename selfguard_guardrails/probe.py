"""The awareness probe's data: a direction and threshold at one layer (see `awareness.py`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AwarenessProbe:
    """Direction and threshold at one layer; `auc` is measured on held-out calibration prompts."""

    layer: int
    direction: torch.Tensor
    threshold: float
    auc: float

    def score(self, activations: torch.Tensor) -> torch.Tensor:
        """Projection of [n, hidden] last-token states on the harmful-minus-benign direction."""
        return activations.to(torch.float32) @ self.direction.to(torch.float32)


def auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    greater = (positive[:, None] > negative[None, :]).float().mean()
    ties = (positive[:, None] == negative[None, :]).float().mean()
    return float(greater + 0.5 * ties)
