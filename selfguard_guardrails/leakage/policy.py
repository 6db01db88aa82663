"""What to do about a leak, per kind: log it, redact it, block the answer, or generate again."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import InvalidSettingError, SelfGuardError
from .findings import KINDS, Finding, Kind

PolicyAction = Literal["log", "redact", "block", "regenerate"]
ACTIONS: tuple[str, ...] = ("log", "redact", "block", "regenerate")
_RANK = {"log": 0, "redact": 1, "regenerate": 2, "block": 3}  # which action wins when kinds disagree

# A guardrail guards by default: every kind is redacted unless the caller chooses otherwise.
# PII too: the engine cannot tell whose data a name, e-mail or phone number is, nor who reads
# the answer, and PII in an answer is mostly copied from context (documents, tool results) or
# invented; a placeholder costs a few words, a leak cannot be taken back. `log` is one word away.
DEFAULT_ACTIONS: Mapping[str, PolicyAction] = dict.fromkeys(KINDS, "redact")


class LeakBlockedError(SelfGuardError):
    """A generation was withheld because a leak check found something its policy blocks.

    `findings` are the redacted findings (no raw values), so the error can be logged safely.
    """

    def __init__(self, message: str, findings: list[Finding]) -> None:
        super().__init__(message)
        self.findings = findings


@dataclass(frozen=True)
class LeakPolicy:
    """Per-kind actions and how they act. Kinds not named take `DEFAULT_ACTIONS` (redact).

    - `redact_in`: which text `redact` rewrites ("both", "reasoning" or "answer").
    - `block_with`: "raise" (`LeakBlockedError`) or "refusal" (the answer becomes `refusal_text`
      and the reasoning is dropped).
    - `regenerate`: up to `max_regenerations` more tries, each with λ raised by
      `strength_step` (a try in an unsteered mode switches to self-guard), waiting
      `backoff_seconds` × 2^(try−1) between tries; still leaking after the last, it blocks.
    """

    actions: Mapping[str, PolicyAction] = field(default_factory=dict)
    redact_in: Literal["both", "reasoning", "answer"] = "both"
    block_with: Literal["raise", "refusal"] = "raise"
    refusal_text: str = "I can't share that: it would reveal confidential information."
    max_regenerations: int = 2
    strength_step: float = 0.25
    backoff_seconds: float = 0.0

    def __post_init__(self) -> None:
        actions = dict(self.actions)
        for kind, action in actions.items():
            if kind not in KINDS:
                raise InvalidSettingError(f"Unknown leak kind {kind!r} in the policy: use one of {', '.join(KINDS)}.")
            if action not in ACTIONS:
                raise InvalidSettingError(f"Unknown policy action {action!r} for {kind!r}: use one of "
                                          f"{', '.join(ACTIONS)}.")
        object.__setattr__(self, "actions", {kind: actions.get(kind, DEFAULT_ACTIONS[kind]) for kind in KINDS})
        if self.redact_in not in ("both", "reasoning", "answer"):
            raise InvalidSettingError(f"redact_in must be 'both', 'reasoning' or 'answer', got {self.redact_in!r}.")
        if self.block_with not in ("raise", "refusal"):
            raise InvalidSettingError(f"block_with must be 'raise' or 'refusal', got {self.block_with!r}.")
        if not isinstance(self.max_regenerations, int) or self.max_regenerations < 0:
            raise InvalidSettingError(f"max_regenerations must be a whole number >= 0, got {self.max_regenerations!r}.")
        if not self.strength_step > 0 or not self.backoff_seconds >= 0:
            raise InvalidSettingError("strength_step must be > 0 and backoff_seconds >= 0.")

    @classmethod
    def parse(cls, value: LeakPolicy | Mapping[str, Any] | str | None) -> LeakPolicy:
        """A policy from itself, None (the safe defaults: redact every kind), one action for every kind ("redact"), or a
        mapping of kinds to actions plus any of the options, e.g. {"secret": "block", "pii": "redact"}."""
        if value is None:
            return cls()
        if isinstance(value, LeakPolicy):
            return value
        if isinstance(value, str):
            if value not in ACTIONS:
                raise InvalidSettingError(f"Unknown policy action {value!r}: use one of {', '.join(ACTIONS)}, or a "
                                          "mapping such as {'secret': 'block', 'pii': 'redact'}.")
            return cls(actions=dict.fromkeys(KINDS, value))  # type: ignore[arg-type]
        if isinstance(value, Mapping):
            options = {k: v for k, v in value.items() if k not in KINDS}
            unknown = set(options) - set(cls.__dataclass_fields__) - {"actions"}
            if unknown:
                raise InvalidSettingError(f"Unknown leak policy key(s) {sorted(unknown)}: use the kinds "
                                          f"{', '.join(KINDS)} or the options {', '.join(_OPTIONS)}.")
            actions = {**dict(options.pop("actions", {})), **{k: v for k, v in value.items() if k in KINDS}}
            return cls(actions=actions, **options)
        raise InvalidSettingError(f"A leak policy is a LeakPolicy, an action name or a mapping, got "
                                  f"{type(value).__name__}.")

    def action_for(self, findings: list[Finding]) -> PolicyAction | Literal["none"]:
        """The strongest action any finding calls for ("none" without findings)."""
        if not findings:
            return "none"
        return max((self.actions[f.kind] for f in findings), key=_RANK.__getitem__)

    @property
    def holds_back_streams(self) -> bool:
        """Whether a stream must hold text back until it is checked (anything beyond `log`)."""
        return any(action != "log" for action in self.actions.values())

    def kinds_with(self, action: str) -> set[Kind]:
        return {kind for kind, chosen in self.actions.items() if chosen == action}  # type: ignore[misc]


_OPTIONS = [name for name in LeakPolicy.__dataclass_fields__ if name != "actions"]
