"""LangChain messages to the engine's chat messages, and engine results back to AI messages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.messages.ai import UsageMetadata

from ...errors import InvalidMessagesError
from ...method.refusals import guardrail_refusal
from ...results import GenerationResult

# Blocks of an earlier answer that are not fed back: its reasoning, its refusal (the text holds
# it too) and its tool calls (they travel in `AIMessage.tool_calls`).
SKIPPED_BLOCKS = ("reasoning", "thinking", "refusal", "tool_use", "tool_call", "tool_call_chunk", "invalid_tool_call")


def _text(content: Any, where: str) -> str:
    """A message's text: a string, or the text blocks of a block list (other blocks are refused)."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif isinstance(block, dict) and block.get("type") in SKIPPED_BLOCKS:
            continue
        else:
            kind = block.get("type") if isinstance(block, dict) else type(block).__name__
            raise InvalidMessagesError(f"{where} holds a {kind!r} content block; this model reads text only: "
                                       "send the text, or describe the image in words.")
    return "".join(parts)


def to_engine_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """Engine messages (role/content dicts; tool calls and results kept for the chat template)."""
    converted: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        where = f"Message {index} ({type(message).__name__})"
        if isinstance(message, SystemMessage):
            converted.append({"role": "system", "content": _text(message.content, where)})
        elif isinstance(message, HumanMessage):
            converted.append({"role": "user", "content": _text(message.content, where)})
        elif isinstance(message, AIMessage):
            turn: dict[str, Any] = {"role": "assistant", "content": _text(message.content, where)}
            if message.tool_calls:
                turn["tool_calls"] = [{"type": "function", "id": call.get("id"),
                                       "function": {"name": call["name"], "arguments": call["args"]}}
                                      for call in message.tool_calls]
            converted.append(turn)
        elif isinstance(message, ToolMessage):
            converted.append({"role": "tool", "content": _text(message.content, where),
                              "tool_call_id": message.tool_call_id, "name": message.name or ""})
        else:
            raise InvalidMessagesError(f"{where}: unsupported message type {message.type!r}; use system, human, "
                                       "ai or tool messages.")
    return converted


def usage_of(result: GenerationResult) -> UsageMetadata:
    usage = result.usage
    return UsageMetadata(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                         total_tokens=usage.total_tokens,
                         output_token_details={"reasoning": usage.reasoning_tokens})


def metadata_of(result: GenerationResult) -> dict[str, Any]:
    """What the engine did, for `response_metadata`: model, mode, steering, gate, leak summary."""
    steering = result.steering
    return {"model_name": result.model, "model_provider": "selfguard", "finish_reason": result.finish_reason,
            "mode": result.mode,
            "steering_layers": None if steering is None else list(steering.layers),
            "steering_strength": None if steering is None else steering.strength,
            "awareness": result.awareness,
            "gate_fired": result.gate_fired,
            "leakage": None if result.leakage is None else result.leakage.summary()}


def refusal_kwargs(result: GenerationResult) -> dict[str, str]:
    """`additional_kwargs` that carry the refusal (where OpenAI's messages carry theirs), or none."""
    refusal = guardrail_refusal(result)
    return {} if refusal is None else {"refusal": refusal}
