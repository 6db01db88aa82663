"""The OpenAI chat-completions request as the server accepts it, and what it becomes for the engine.

Every field is either applied or refused: unknown fields, and known ones the server cannot
honour (`n` above 1, penalties, log-probabilities, images, structured output), are a 400 naming
the field, never silently dropped. Fields set to their OpenAI default (`n=1`, penalties 0) are
accepted, since clients send them unasked.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import InvalidMessagesError

OPENAI_TO_ENGINE_ROLE = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
                         "tool": "tool"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class FunctionCall(_Strict):
    name: str
    arguments: str


class ToolCall(_Strict):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class WireMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None  # echoed back by clients on assistant turns; the text is in content
    reasoning_content: str | None = None  # echoed back by some clients; never shown to the model again

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class FunctionDefinition(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDefinition(_Strict):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(_Strict):
    include_usage: bool = False


class SelfGuardOptions(_Strict):
    """The request's extension object (`"selfguard": {...}`): per-request Self-Guard."""

    mode: str | None = Field(default=None, description="plain, prompt, steer, self-guard or guarded")
    strength: float | None = Field(default=None, description="λ for the steered modes, within the server's limits")
    layers: list[int] | None = Field(default=None, description="decoder layers to steer, if the server allows it")


class ChatCompletionRequest(_Strict):
    model: str | None = None
    messages: list[WireMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None  # permission to make several; one call per turn honours either
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=256)  # recorded in the audit log
    n: Literal[1] = 1
    presence_penalty: Literal[0] | None = None
    frequency_penalty: Literal[0] | None = None
    logprobs: Literal[False] | None = None
    selfguard: SelfGuardOptions | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if isinstance(stop, list) and len(stop) > 4:
            raise ValueError("at most 4 stop sequences")
        return stop

    @model_validator(mode="after")
    def _tool_choice_needs_tools(self) -> ChatCompletionRequest:
        if isinstance(self.tool_choice, NamedToolChoice):
            names = {tool.function.name for tool in self.tools or []}
            if self.tool_choice.function.name not in names:
                raise ValueError(f"tool_choice names {self.tool_choice.function.name!r}, which is not in tools")
        elif self.tool_choice == "required" and not self.tools:
            raise ValueError("tool_choice 'required' needs tools")
        return self

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def stops(self) -> list[str] | None:
        return [self.stop] if isinstance(self.stop, str) else self.stop


def engine_messages(messages: list[WireMessage]) -> list[dict[str, Any]]:
    """The conversation as the engine reads it: `developer` is a system turn, text parts are
    joined, a tool result carries the name of the call it answers (OpenAI sends only its id)."""
    names_by_call: dict[str, str] = {}
    converted: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        entry: dict[str, Any] = {"role": OPENAI_TO_ENGINE_ROLE[message.role], "content": message.text()}
        if message.tool_calls:
            entry["tool_calls"] = [{"id": call.id, "type": "function",
                                    "function": {"name": call.function.name, "arguments": call.function.arguments}}
                                   for call in message.tool_calls]
            names_by_call.update((call.id, call.function.name) for call in message.tool_calls)
        if message.role == "tool":
            if message.tool_call_id is None:
                raise InvalidMessagesError(f"messages[{index}] is a tool result without tool_call_id: give the id "
                                           "of the assistant's call it answers.")
            entry["tool_call_id"] = message.tool_call_id
            entry["name"] = message.name or names_by_call.get(message.tool_call_id, "tool")
        elif message.role == "assistant" and message.content is None and not message.tool_calls:
            raise InvalidMessagesError(f"messages[{index}] is an assistant turn with neither content nor tool_calls.")
        converted.append(entry)
    return converted


def tool_choice_value(request: ChatCompletionRequest) -> str | None:
    """The tool choice as the engine's tool turn takes it: "auto", "any" or a tool's name; None
    when no tool may be called."""
    if not request.tools or request.tool_choice == "none":
        return None
    if isinstance(request.tool_choice, NamedToolChoice):
        return request.tool_choice.function.name
    return "any" if request.tool_choice == "required" else "auto"
