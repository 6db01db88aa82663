"""The awareness probe's data: a direction and threshold at one layer (fitted in `probe_fitting.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

ProbeMethod = Literal["logistic", "mean_difference"]


@dataclass(frozen=True)
class AwarenessProbe:
    """Unit direction and threshold at one layer; `auc` is measured on held-out calibration prompts.

    Both fitting methods end in this form (a logistic model's scaling and bias are folded into
    the threshold), so the gate is one dot product whichever method made it.
    """

    layer: int
    direction: torch.Tensor
    threshold: float
    auc: float
    method: str = "mean_difference"
    # lowest and highest score on the prompts it was fitted on: where a threshold can sensibly sit
    score_range: tuple[float, float] | None = None

    def score(self, activations: torch.Tensor) -> torch.Tensor:
        """Projection of [n, hidden] last-token states on the probe's harmful direction."""
        return activations.to(torch.float32) @ self.direction.to(torch.float32)


def auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    greater = (positive[:, None] > negative[None, :]).float().mean()
    ties = (positive[:, None] == negative[None, :]).float().mean()
    return float(greater + 0.5 * ties)
