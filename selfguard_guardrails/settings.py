"""Setting types shared by the engine, the CLI and the adapters, their checks and provisional defaults.

No torch here: the command line reads these names (modes, scopes, checks) to build its help
without loading the model stack.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Literal

from .errors import InvalidSettingError

if TYPE_CHECKING:
    from .method.probe import AwarenessProbe

Scope = Literal["all", "generated", "answer"]
SCOPES: tuple[str, ...] = ("all", "generated", "answer")
TOKEN_SCOPES: tuple[str, ...] = ("generated", "answer")  # scopes that count positions from the prompt's end
# How an awareness probe is fitted and how a vector is extracted, by name. Named here rather than
# next to the torch code that implements them, so the command line offers them without torch.
PROBE_METHODS: tuple[str, ...] = ("logistic", "mean_difference")
# what the probe reads at its layer: the last prompt token's state, or that state followed by the
# mean over the user's tokens (a request inside a story or a document moves the mean more than the end)
PROBE_READINGS: tuple[str, ...] = ("last", "last+mean")
EXTRACTION_METHODS: tuple[str, ...] = ("mean_difference", "pca")

# The strongest λ at which the embedded SmolLM2-135M stayed readable in calibration; above it the
# answers degenerate (docs/report.md, "Figures behind defaults").
READABLE_STRENGTH = 1.0


def check_strength(strength: float, *, allow_negative: bool = False) -> float:
    """λ must be a finite number (NaN or infinity would destroy every hidden state), and not
    negative unless asked for by name: a negative λ steers *away* from safety, so the model
    complies with harmful requests, which a safety library must never do by a slip of the sign."""
    try:
        value = float(strength)
    except (TypeError, ValueError) as error:
        raise InvalidSettingError(f"Steering strength must be a number, got {strength!r}.") from error
    if not math.isfinite(value):
        raise InvalidSettingError(f"Steering strength must be finite, got {value}: use e.g. 0.6.")
    if value < 0 and not allow_negative:
        raise InvalidSettingError(
            f"Steering strength {value:g} is negative: it steers away from safety and makes the model comply with "
            "harmful requests. Use λ >= 0; for research on that effect, opt in with allow_negative_strength=True "
            "(--allow-negative-strength on the command line).")
    return value


def warn_if_unreadable(strength: float) -> None:
    """Warn about a λ past the point where calibration saw the embedded model's text break."""
    if abs(strength) > READABLE_STRENGTH:
        warnings.warn(f"Steering strength {strength:g} is above {READABLE_STRENGTH:g}, the strongest at which the "
                      "embedded model's answers stayed readable in calibration (at 1.5 they were garbled). Check "
                      "the degenerate rate with `selfguard eval` before relying on it.", UserWarning, stacklevel=4)


def check_max_tokens(max_tokens: int | None, scope: str) -> None:
    """A steered-token budget counts answer tokens, so it needs scope `generated` or `answer` and at least 1."""
    if max_tokens is None:
        return
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidSettingError(f"max_tokens (how many generated tokens to steer) must be a whole number >= 1 "
                                  f"or None for all, got {max_tokens!r}.")
    if scope not in TOKEN_SCOPES:
        raise InvalidSettingError("max_tokens counts generated tokens: use it with scope 'generated' or 'answer'.")


def check_repetition_penalty(value: object) -> float:
    """A finite number >= 1 (1 = off); below 1 would reward loops, which is never what we want."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 1:
        raise InvalidSettingError(f"repetition_penalty must be a finite number >= 1 (1 = off), got {value!r}.")
    return float(value)


class Mode(str, Enum):
    """Which half of Self-Guard to apply: neither, the prompt, the vector, both, or both only
    where the model's own awareness probe reads the request as harmful (`guarded`)."""

    PLAIN = "plain"
    PROMPT = "prompt"
    STEER = "steer"
    SELF_GUARD = "self-guard"
    GUARDED = "guarded"

    @property
    def uses_prompt(self) -> bool:
        """Whether the safety prompt is added (for `guarded`: when the gate fires)."""
        return self in (Mode.PROMPT, Mode.SELF_GUARD, Mode.GUARDED)

    @property
    def uses_steering(self) -> bool:
        """Whether the vector is added (for `guarded`: when the gate fires)."""
        return self in (Mode.STEER, Mode.SELF_GUARD, Mode.GUARDED)

    @property
    def gated(self) -> bool:
        return self is Mode.GUARDED

    @classmethod
    def parse(cls, value: str | Mode) -> Mode:
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise InvalidSettingError(f"Unknown mode {value!r}: use one of {names}.") from None


@dataclass(frozen=True)
class SteeringSetting:
    """Where and how strongly to steer: decoder-layer indices, λ, and the token scope."""

    layers: tuple[int, ...]
    strength: float
    scope: Scope = "all"
    source: str = field(default="provisional", compare=False)
    max_tokens: int | None = None  # scope generated only: steer the first N generated tokens (None: all)
    # Steered answers only. Steering strong enough to make a small model refuse also keeps it
    # from stopping (it repeats its refusal); penalising repeats lets it end instead.
    repetition_penalty: float = 1.0
    # Steered answers only: end the answer after its first sentence when that sentence is a refusal
    # (method/refusals.py), rather than let the steering push on into echoes of the safety prompt.
    # An output rule, not a steering parameter: a vector file does not record it.
    stop_after_refusal: bool = True
    # research only: a negative λ steers away from safety (see `check_strength`)
    allow_negative_strength: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "strength", check_strength(self.strength, allow_negative=self.allow_negative_strength))
        warn_if_unreadable(self.strength)
        object.__setattr__(self, "layers", tuple(self.layers))
        if self.scope not in SCOPES:
            raise InvalidSettingError(f"Unknown steering scope {self.scope!r}: use one of {', '.join(SCOPES)}.")
        check_max_tokens(self.max_tokens, self.scope)
        object.__setattr__(self, "repetition_penalty", check_repetition_penalty(self.repetition_penalty))
        if not isinstance(self.stop_after_refusal, bool):
            raise InvalidSettingError(f"stop_after_refusal must be True or False, got {self.stop_after_refusal!r}.")


BelowGate = Literal["plain", "prompt"]


@dataclass(frozen=True)
class GateSetting:
    """What `guarded` mode does on each side of the awareness probe's threshold.

    Above it, Self-Guard runs with `strength` (None: the steering setting's λ) on the steering
    setting's layers and scope: the gate keeps benign prompts away from steering, so λ can be
    stronger than ungated Self-Guard affords. Below it, the prompt runs `below` (plain, or with
    the safety prompt only). `soft_width` makes the gate soft: λ grows linearly from 0 at the
    threshold to `strength` at `soft_width` probe units above it (None: full λ once it fires).
    """

    strength: float | None = None
    below: BelowGate = "plain"
    soft_width: float | None = None
    threshold: float | None = None  # in probe-score units; None: the probe's own (fitted or calibrated)
    source: str = field(default="default", compare=False)
    allow_negative_strength: bool = field(default=False, compare=False)  # research only, as for SteeringSetting

    def __post_init__(self) -> None:
        if self.strength is not None:
            object.__setattr__(self, "strength",
                               check_strength(self.strength, allow_negative=self.allow_negative_strength))
            warn_if_unreadable(self.strength)
        if self.below not in ("plain", "prompt"):
            raise InvalidSettingError(f"Below the gate a prompt runs 'plain' or 'prompt', got {self.below!r}.")
        if self.soft_width is not None and not (isinstance(self.soft_width, (int, float)) and self.soft_width > 0):
            raise InvalidSettingError(f"soft_width is a positive number of probe units (or None for a hard gate), "
                                      f"got {self.soft_width!r}.")
        if self.threshold is not None and not (isinstance(self.threshold, (int, float))
                                               and math.isfinite(self.threshold)):
            raise InvalidSettingError(f"The gate threshold must be a finite number of probe units, got "
                                      f"{self.threshold!r}.")

    def threshold_for(self, probe: AwarenessProbe) -> float:
        """The cut on `probe`'s score: ours if set (checked against the scores the probe was fitted
        on, since a cut outside them fires on every prompt or on none), else the probe's own."""
        if self.threshold is None:
            return probe.threshold
        if probe.score_range is not None:
            low, high = probe.score_range
            if not low <= self.threshold <= high:
                raise InvalidSettingError(
                    f"The gate threshold {self.threshold:g} is outside the probe's range: its scores on the "
                    f"prompts it was fitted on run from {low:.4g} to {high:.4g} (own threshold "
                    f"{probe.threshold:.4g}), so it would fire on every prompt or on none. Pick a value inside, "
                    "or calibrate one (selfguard calibrate --gate-recalls).")
        return self.threshold

    def strength_for(self, setting: SteeringSetting, score: float) -> float:
        """λ for a prompt whose probe score (minus the threshold) is `score` >= 0."""
        full = setting.strength if self.strength is None else self.strength
        return full if self.soft_width is None else full * min(1.0, score / self.soft_width)

    def as_dict(self) -> dict[str, object]:
        return {"strength": self.strength, "below": self.below, "soft_width": self.soft_width,
                "threshold": self.threshold}


# From a prototype on the embedded SmolLM2-135M: λ 0.6 at 60-70% depth with the safety prompt,
# steering generated tokens only (on top of the safety prompt, steering the prompt positions too
# broke many answers: docs/report.md, "Figures behind defaults"). Calibration replaces this per model.
PROVISIONAL_STRENGTH = 0.6
PROVISIONAL_DEPTH = (0.6, 0.7)


def provisional_setting(num_layers: int) -> SteeringSetting:
    """The layers at 60-70% depth (18-20 of 30; at least one), λ 0.6, generated tokens: a start, not a calibration."""
    first = int(num_layers * PROVISIONAL_DEPTH[0])
    last = max(first, min(num_layers - 1, int(num_layers * PROVISIONAL_DEPTH[1]) - 1))
    return SteeringSetting(layers=tuple(range(first, last + 1)), strength=PROVISIONAL_STRENGTH, scope="generated")


DEFAULT_MAX_NEW_TOKENS = 256
