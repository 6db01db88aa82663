"""The awareness probe's data: a direction and threshold at one layer (fitted in `probe_fitting.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

ProbeMethod = Literal["logistic", "mean_difference"]
ProbeReading = Literal["last", "last+mean"]


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
    # "last": the last prompt token's state ([hidden]); "last+mean": that state followed by the mean
    # over the user's tokens ([2 * hidden])
    reading: str = "last"

    @property
    def features(self) -> int:
        """How many numbers per hidden unit the probe reads: 1 for "last", 2 for "last+mean"."""
        return 2 if self.reading == "last+mean" else 1

    def score(self, activations: torch.Tensor) -> torch.Tensor:
        """Projection of [n, features * hidden] states (as `reading` says) on the probe's harmful direction."""
        return activations.to(torch.float32) @ self.direction.to(torch.float32)


def auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    greater = (positive[:, None] > negative[None, :]).float().mean()
    ties = (positive[:, None] == negative[None, :]).float().mean()
    return float(greater + 0.5 * ties)
