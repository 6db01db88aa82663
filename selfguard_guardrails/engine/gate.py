"""The awareness gate of `guarded` mode: probe scores (with a small cache) and the route each prompt takes.

The probe reads the model's own hidden state of a prompt; above the threshold the prompt runs
as Self-Guard with the gate's λ (soft: growing with the score), below it as the gate's `below`
mode. Scores are cached per probe, so the pieces of one guided tool call, or a retried
question, are read once.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..method.probe import AwarenessProbe
from ..method.probe_fitting import probe_states
from ..runtime.protocol import ModelRuntime
from ..settings import GateSetting, Mode, SteeringSetting

SCORES_KEPT = 256  # probe scores remembered per engine (a few kB)


@dataclass(frozen=True)
class Route:
    """How one prompt runs: its effective mode and, where the gate fired, its λ."""

    mode: Mode
    strength: float | None = None


class ProbeScoreCache:
    """Raw probe scores of recently gated prompt texts, for one probe at a time (a new probe starts afresh)."""

    def __init__(self, kept: int = SCORES_KEPT) -> None:
        self.kept = kept
        self.probe: AwarenessProbe | None = None
        self.scores: OrderedDict[str, float] = OrderedDict()

    def scores_for(self, runtime: ModelRuntime, probe: AwarenessProbe, texts: list[str]) -> list[float]:
        """The probe's score of each text, reading only the texts it has not scored recently."""
        if self.probe is not probe:
            self.probe, self.scores = probe, OrderedDict()
        known = self.scores
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            states = probe_states(runtime, missing, probe.reading, up_to_layer=probe.layer)
            known.update(zip(missing, (float(v) for v in probe.score(states[:, probe.layer])), strict=True))
        scores = [known[text] for text in texts]  # read before evicting: a call may hold more texts than are kept
        for text in texts:
            known.move_to_end(text)
        while len(known) > self.kept:
            known.popitem(last=False)
        return scores


def routes(scores: list[float], gate: GateSetting, setting: SteeringSetting) -> list[Route]:
    """Per gated prompt (its probe score minus the threshold), the mode it actually runs in; for a
    fired gate also its λ."""
    return [Route(Mode.SELF_GUARD, gate.strength_for(setting, score)) if score >= 0 else Route(Mode(gate.below))
            for score in scores]


def gated_setting(setting: SteeringSetting, gate: GateSetting) -> SteeringSetting:
    """The steering setting with the gate's (full) λ: what a fired gate applies."""
    return replace(setting, strength=gate.strength_for(setting, math.inf), source=f"gate ({gate.source})",
                   allow_negative_strength=setting.allow_negative_strength or gate.allow_negative_strength)


def group_steering(group: Sequence[Route], setting: SteeringSetting,
                   gate: GateSetting) -> tuple[SteeringSetting, list[float] | None]:
    """Setting and per-row λ for rows where the gate fired, decoded together (a soft gate gives
    each row its own λ; a hard one, the setting's)."""
    soft = [route.strength for route in group if route.strength is not None] if gate.soft_width is not None else None
    return gated_setting(setting, gate), soft
