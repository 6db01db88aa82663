"""Typed results of the engine: what was generated, how it was steered, what it cost."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, computed_field

from .leakage.report import LeakageReport
from .runtime.reasoning import Channel

# "abandoned": the caller stopped reading a stream before its end (what was generated until then)
FinishReason = Literal["eos", "length", "stop", "abandoned"]


class Usage(BaseModel):
    """Token counts; reasoning tokens are part of the output tokens."""

    input_tokens: int
    output_tokens: int
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class SteeringApplied(BaseModel):
    """The steering actually applied to a generation (None on the result when not steered)."""

    layers: list[int]
    strength: float
    scope: str
    method: str
    vector_fingerprint: str = Field(description="model fingerprint recorded in the vector")
    max_tokens: int | None = Field(default=None, description="generated tokens steered (None: all)")
    repetition_penalty: float = Field(default=1.0, description="penalty on tokens the answer already used")


class Timings(BaseModel):
    """Wall-clock seconds: prefill (prompt), decode (new tokens) and the whole call."""

    prefill_seconds: float
    decode_seconds: float
    total_seconds: float

    def tokens_per_second(self, tokens: int) -> float:
        return tokens / self.decode_seconds if self.decode_seconds > 0 else 0.0


class GenerationResult(BaseModel):
    """One generation: the answer, the reasoning trace kept apart, and how it was made."""

    answer: str
    reasoning: str = ""
    reasoning_truncated: bool = False
    mode: str
    finish_reason: FinishReason
    usage: Usage
    steering: SteeringApplied | None = None
    safety_prompt_applied: bool = False
    timings: Timings
    model: str = ""
    awareness: float | None = Field(default=None, description="awareness-probe score minus its threshold; "
                                    "above 0: the model reads the prompt as harmful (None: no gate ran)")
    leakage: LeakageReport | None = Field(default=None, description="what the leak checks found and did "
                                          "(None: checks off)")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def gate_fired(self) -> bool | None:
        """Whether the awareness gate applied Self-Guard (None: no gate ran, i.e. not `guarded` mode)."""
        return None if self.awareness is None else self.awareness >= 0


class StreamPiece(BaseModel):
    """A piece of streamed text and the channel it belongs to (reasoning or answer)."""

    channel: Channel
    text: str
