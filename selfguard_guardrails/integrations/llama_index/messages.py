"""LlamaIndex chat messages to the engine's messages, and engine results back to LlamaIndex types."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    CachePoint,
    ChatMessage,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)

from ...errors import InvalidMessagesError
from ...results import GenerationResult
from ...tooling.parsing import ParsedOutput

_ROLES = {MessageRole.SYSTEM: "system", MessageRole.DEVELOPER: "system", MessageRole.USER: "user",
          MessageRole.ASSISTANT: "assistant", MessageRole.CHATBOT: "assistant", MessageRole.MODEL: "assistant",
          MessageRole.TOOL: "tool", MessageRole.FUNCTION: "tool"}


def _tool_calls_of(message: ChatMessage) -> list[dict[str, Any]]:
    """An assistant message's calls: `ToolCallBlock`s, or OpenAI-style `additional_kwargs["tool_calls"]`."""
    calls = [{"type": "function", "id": b.tool_call_id,
              "function": {"name": b.tool_name, "arguments": b.tool_kwargs}}
             for b in message.blocks if isinstance(b, ToolCallBlock)]
    for call in message.additional_kwargs.get("tool_calls") or []:
        function = call.get("function", call) if isinstance(call, dict) else {}
        if function.get("name") and not any(c["id"] == call.get("id") for c in calls):
            calls.append({"type": "function", "id": call.get("id"),
                          "function": {"name": function["name"], "arguments": function.get("arguments", {})}})
    return calls


def _text(message: ChatMessage, where: str) -> str:
    parts = []
    for block in message.blocks:
        if isinstance(block, TextBlock):
            parts.append(block.text)
        elif isinstance(block, (ThinkingBlock, ToolCallBlock, CachePoint)):
            continue  # earlier reasoning is not fed back; calls travel as tool_calls; cache hints mean nothing here
        else:
            raise InvalidMessagesError(f"{where} holds a {block.block_type!r} block; this model reads text only: "
                                       "send the text, or describe the image or file in words.")
    return "".join(parts)


def to_engine_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """Engine messages; a tool result without a name gets the name of the call it answers."""
    if isinstance(messages, (str, ChatMessage)) or not messages:
        raise InvalidMessagesError("chat() needs a non-empty list of ChatMessage objects.")
    names: dict[str, str] = {}
    converted: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, ChatMessage):
            raise InvalidMessagesError(f"Message {index} is a {type(message).__name__}, not a ChatMessage.")
        where = f"Message {index} ({message.role.value})"
        role = _ROLES.get(message.role)
        if role is None:
            raise InvalidMessagesError(f"{where}: unsupported role; use system, user, assistant or tool.")
        turn: dict[str, Any] = {"role": role, "content": _text(message, where)}
        if role == "assistant":
            calls = _tool_calls_of(message)
            names.update({c["id"]: c["function"]["name"] for c in calls if c["id"]})
            if calls:
                turn["tool_calls"] = calls
        elif role == "tool":
            call_id = message.additional_kwargs.get("tool_call_id")
            known = "" if call_id is None else names.get(call_id, "")
            turn.update(tool_call_id=call_id, name=message.additional_kwargs.get("name") or known)
        converted.append(turn)
    return converted


def usage_of(result: GenerationResult) -> dict[str, int]:
    """Token counts under the keys LlamaIndex token counters read (OpenAI's names)."""
    usage = result.usage
    return {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
            "reasoning_tokens": usage.reasoning_tokens, "total_tokens": usage.total_tokens}


def details_of(result: GenerationResult) -> dict[str, Any]:
    """What the engine did: model, mode, steering, gate, leak summary (as LangChain's response_metadata)."""
    steering = result.steering
    return {"model_name": result.model, "finish_reason": result.finish_reason, "mode": result.mode,
            "steering_layers": None if steering is None else list(steering.layers),
            "steering_strength": None if steering is None else steering.strength,
            "awareness": result.awareness,
            "gate_fired": result.gate_fired,
            "leakage": None if result.leakage is None else result.leakage.summary()}


def assistant_message(result: GenerationResult, parsed: ParsedOutput | None = None) -> ChatMessage:
    """The reply: a `ThinkingBlock` with the reasoning (if any), then the answer's `TextBlock`,
    then one `ToolCallBlock` per call. Calls that did not parse are in
    `additional_kwargs["invalid_tool_calls"]`, with the reason."""
    text = result.answer if parsed is None else parsed.text
    blocks: list[Any] = []
    if result.reasoning:
        blocks.append(ThinkingBlock(content=result.reasoning, num_tokens=result.usage.reasoning_tokens))
    blocks.append(TextBlock(text=text))
    extra: dict[str, Any] = {}
    if parsed is not None:
        blocks += [ToolCallBlock(tool_call_id=c["id"], tool_name=c["name"], tool_kwargs=c["args"])
                   for c in parsed.calls]
        if parsed.invalid:
            extra["invalid_tool_calls"] = [{**bad, "args": bad["args"] if isinstance(bad["args"], str)
                                            else json.dumps(bad["args"])} for bad in parsed.invalid]
    return ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks, additional_kwargs=extra)
