"""What the LangChain and LlamaIndex adapters share, written once so that the two cannot drift:
the settings both take (same name, meaning, default and description), the engine they wrap,
and how one call's settings become engine options.

Each adapter declares what its framework names differently: the token budget (`max_tokens` in
LangChain, `max_new_tokens` in LlamaIndex, both from `max_tokens_field`) and, in LangChain,
`stop` also read as `stop_sequences`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, Field, PrivateAttr

from ..engine.selfguard import SelfGuard
from ..errors import InvalidSettingError
from ..tooling.turns import tool_options
from .engine_slot import EngineSlot


def max_tokens_field() -> Any:
    """The token budget, declared by each adapter under its framework's name for it."""
    return Field(default=256, ge=1, description="new tokens per answer, reasoning included")


class AdapterFields(BaseModel):
    """The settings and engine both adapters have. A mixin placed before the framework's base
    class: both bases are pydantic v2 models, so the fields, defaults and validation carry over,
    and the framework's own `model_config` still decides how they are read."""

    adapter_name: ClassVar[str]  # names the adapter in errors

    model_name: str | None = Field(default=None, alias="model",
                                   description="hub id, local directory or .gguf file; None: the embedded model")
    mode: str | None = Field(default=None,
                             description="plain, prompt, steer, self-guard or guarded; None: the engine's")
    temperature: float = Field(default=0.0, ge=0.0, description="0: greedy")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: list[str] | None = None
    seed: int | None = None
    private_context: list[str] = Field(default_factory=list, description="documents whose copies are leaks")
    tool_call_retries: int = Field(default=2, ge=0, description="sampled retries of a forced tool call that "
                                   "does not parse")
    guided_tool_calls: bool = Field(default=True, description="write a forced call's JSON for the model, which "
                                    "fills only the values (False: generate the whole call, parse, retry)")
    engine_options: dict[str, Any] = Field(default_factory=dict, description="passed to SelfGuard.from_pretrained: "
                                           "leak_policy, canaries, audit, threads, dtype, vector, ...")
    _slot: EngineSlot = PrivateAttr(default_factory=EngineSlot)

    def __init__(self, *, engine: SelfGuard | None = None, **data: Any) -> None:
        super().__init__(**data)
        self._slot = EngineSlot.for_adapter(self.adapter_name, engine, model=self.model_name,
                                            engine_options=self.engine_options)

    def model_post_init(self, context: Any, /) -> None:
        """The framework's own post-init. Pydantic gives a model with private attributes a
        `model_post_init` of its own, which would hide the framework's from the classes below
        (LangChain records its version in `metadata` there)."""
        super().model_post_init(context)

    @property
    def engine(self) -> SelfGuard:
        """The engine, loaded on first use (or the one given)."""
        return self._slot.get(lambda: SelfGuard.from_pretrained(self.model_name, progress=False,
                                                                **self.engine_options))


def call_options(adapter: AdapterFields, kwargs: Mapping[str, Any], *, max_new_tokens: int,
                 stop: list[str] | None, ignored: Sequence[str] = ()) -> dict[str, Any]:
    """Engine options for one call: each setting as given to the call, else the adapter's, and
    the tools as `tool_options` maps them. The token budget and stop strings come resolved by
    the adapter (the frameworks name and pass them differently). An option that is neither known
    nor in `ignored` (passed by the framework, meaning nothing here) is refused by name, so that a
    misspelt one does not silently change nothing."""
    kwargs = dict(kwargs)
    stop = stop or adapter.stop
    options = {"mode": kwargs.pop("mode", adapter.mode), "max_new_tokens": max_new_tokens,
               "temperature": kwargs.pop("temperature", adapter.temperature),
               "top_p": kwargs.pop("top_p", adapter.top_p), "seed": kwargs.pop("seed", adapter.seed),
               "private_context": kwargs.pop("private_context", None) or adapter.private_context or None,
               "canaries": kwargs.pop("canaries", None)}
    options.update(tool_options(kwargs.pop("tools", None), kwargs.pop("tool_choice", None), stop))
    for name in ignored:
        kwargs.pop(name, None)
    if kwargs:
        raise InvalidSettingError(f"{adapter.adapter_name} does not know the option(s) {sorted(kwargs)}.")
    return options
