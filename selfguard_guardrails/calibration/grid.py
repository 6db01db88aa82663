"""The search space of `selfguard calibrate`: which half of Self-Guard, which layers, how strong."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InvalidSettingError
from ..runtime.layers import validate_layers
from ..settings import SCOPES, Mode, Scope, SteeringSetting, check_max_tokens, check_repetition_penalty, check_strength

DEFAULT_STRENGTHS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
DEFAULT_WIDTH = 3
SEARCHED_MODES = (Mode.PROMPT, Mode.STEER, Mode.SELF_GUARD)  # guarded needs a probe: asked for by name


@dataclass(frozen=True)
class Candidate:
    """One point of the grid. Prompt-only candidates carry no layers and no strength.

    `gate_recall` (guarded candidates only) moves the awareness gate's threshold so that it flags
    that share of the calibration harmful prompts (None: the probe's own threshold, fitted to flag
    at most 5 % of our benign calibration prompts, which can leave many harmful requests of another
    set unguarded). A guarded candidate's λ is the gate's: Self-Guard's strength where it fires.
    """

    mode: Mode
    layers: tuple[int, ...] = ()
    strength: float = 0.0
    scope: Scope = "generated"
    gate_recall: float | None = None
    max_tokens: int | None = None  # steer only the first N generated tokens (None: all)
    repetition_penalty: float = 1.0  # on the steered answers' repeated tokens (1: off)

    @property
    def label(self) -> str:
        gate = "" if self.gate_recall is None else f" gate {self.gate_recall:.0%}"
        if not self.mode.uses_steering:
            return self.mode.value + gate
        scope = self.scope if self.max_tokens is None else f"first {self.max_tokens} tokens"
        penalty = "" if self.repetition_penalty == 1 else f" rep {self.repetition_penalty:g}"
        return f"{self.mode.value} L{window_label(self.layers)} λ{self.strength:g} {scope}{penalty}{gate}"

    def setting(self, fallback: SteeringSetting) -> SteeringSetting:
        """The steering setting this candidate stands for (prompt-only keeps the fallback's layers)."""
        if not self.mode.uses_steering:
            return fallback
        return SteeringSetting(layers=self.layers, strength=self.strength, scope=self.scope, source="calibration",
                               max_tokens=self.max_tokens, repetition_penalty=self.repetition_penalty)

    def as_dict(self) -> dict[str, object]:
        return {"mode": self.mode.value, "layers": list(self.layers), "strength": self.strength, "scope": self.scope,
                "max_tokens": self.max_tokens, "repetition_penalty": self.repetition_penalty,
                "gate_recall": self.gate_recall}


def window_label(layers: Sequence[int]) -> str:
    return f"{layers[0]}-{layers[-1]}" if len(layers) > 1 else str(layers[0])


def default_windows(num_layers: int, width: int = DEFAULT_WIDTH) -> list[tuple[int, ...]]:
    """Contiguous windows starting between 20% and 80% depth, about 10 of them.

    The safety shift is small and noisy in the first layers and the last ones mostly decide
    tokens, so steering that works sits in between (18-20 of 30 on the embedded model).
    """
    if width < 1:
        raise InvalidSettingError(f"The window width must be at least 1 layer, got {width}.")
    width = min(width, num_layers)
    first = int(num_layers * 0.2)
    last_start = max(first, min(int(num_layers * 0.8), num_layers - width))
    step = max(1, (last_start - first) // 9)
    return [tuple(range(start, start + width)) for start in range(first, last_start + 1, step)]


def searched_modes(modes: Sequence[Mode | str], scopes: Sequence[str] = ("generated",)) -> list[Mode]:
    """The modes to search, checked (with the scopes) before any model is loaded."""
    parsed = [Mode.parse(m) for m in modes]
    if not parsed or Mode.PLAIN in parsed:
        raise InvalidSettingError("Calibrate searches prompt, steer, self-guard and/or guarded (plain is the "
                                  "baseline, always measured): e.g. --modes prompt,steer,self-guard,guarded.")
    for scope in scopes:
        if scope not in SCOPES:
            raise InvalidSettingError(f"Unknown steering scope {scope!r}: use one of {', '.join(SCOPES)}.")
    return list(dict.fromkeys(parsed))


def build_grid(
    num_layers: int,
    *,
    modes: Sequence[Mode | str] = SEARCHED_MODES,
    windows: Sequence[Sequence[int]] | None = None,
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    scopes: Sequence[str] = ("generated",),
    gate_recalls: Sequence[float | None] = (None,),
    token_budgets: Sequence[int | None] = (None,),
    repetition_penalties: Sequence[float] = (1.0,),
) -> list[Candidate]:
    """Every (mode, window, λ, scope, token budget, repetition penalty) to score, and for guarded
    every gate level too; the prompt-only mode once."""
    parsed = searched_modes(modes, scopes)
    for recall in gate_recalls:
        if recall is not None and not 0 < recall <= 1:
            raise InvalidSettingError(f"A gate recall is a share of harmful prompts in (0, 1], got {recall!r}.")
    chosen_windows = [tuple(validate_layers(list(w), num_layers)) for w in (windows or default_windows(num_layers))]
    values = [check_strength(s) for s in strengths]
    budgets = list(dict.fromkeys(token_budgets))
    for budget in budgets:
        check_max_tokens(budget, "generated")
    penalties = list(dict.fromkeys(check_repetition_penalty(p) for p in repetition_penalties))
    if any(s <= 0 for s in values):
        raise InvalidSettingError("Calibration strengths must be positive (λ 0 is the prompt-only mode).")
    grid: list[Candidate] = []
    for mode in parsed:
        if not mode.uses_steering:
            grid.append(Candidate(mode))
            continue
        for recall in dict.fromkeys(gate_recalls) if mode.gated else [None]:
            grid += [Candidate(mode, window, strength, scope, recall, budget, penalty)  # type: ignore[arg-type]
                     for scope in scopes for budget in budgets if scope != "all" or budget is None
                     for window in chosen_windows for strength in values for penalty in penalties]
    return grid
