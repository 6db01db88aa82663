"""What the operator of a server decides: who may call it, how much, and what a request may change.

The defaults guard: a request may choose only the modes that guard (`guarded`, `self-guard`),
may not change λ or the steered layers unless the operator opens a range for it, and is
bounded in size, messages, tokens and how many may wait at once.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..settings import Mode

GUARDING_MODES = (Mode.GUARDED.value, Mode.SELF_GUARD.value)


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str | None = Field(default=None, description="the id in /v1/models and responses (default: the "
                                                               "loaded model's name)")
    api_key: str | None = Field(default=None, repr=False, description="require `Authorization: Bearer KEY`")
    max_request_bytes: int = Field(default=1_000_000, gt=0)
    max_messages: int = Field(default=256, gt=0)
    max_tokens_limit: int = Field(default=1024, gt=0, description="the largest max_tokens a request may ask for")
    default_max_tokens: int = Field(default=256, gt=0, description="max_tokens of a request that gives none")
    max_pending: int = Field(default=64, gt=0, description="requests waiting or running at once; more get a 429")
    max_batch_size: int = Field(default=8, gt=0)
    max_wait_ms: float = Field(default=10.0, ge=0, description="how long a batch waits for more requests")
    allowed_modes: tuple[str, ...] = Field(default=GUARDING_MODES, min_length=1)
    strength_range: tuple[float, float] | None = Field(
        default=None, description="the λ a request may set (None: the server's own λ only)")
    allow_layer_override: bool = False

    @field_validator("allowed_modes")
    @classmethod
    def _known_modes(cls, modes: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(Mode.parse(mode).value for mode in modes)

    @field_validator("strength_range")
    @classmethod
    def _ordered(cls, bounds: tuple[float, float] | None) -> tuple[float, float] | None:
        if bounds is not None and not 0 <= bounds[0] <= bounds[1]:
            raise ValueError(f"strength_range must be (low, high) with 0 <= low <= high, got {bounds}")
        return bounds

    @model_validator(mode="after")
    def _default_within_limit(self) -> ServerSettings:
        if self.default_max_tokens > self.max_tokens_limit:
            raise ValueError(f"default_max_tokens ({self.default_max_tokens}) is above max_tokens_limit "
                             f"({self.max_tokens_limit})")
        return self
