"""Where LangChain chat models put the parts of a reply that the leak checks read, and how a
checked reply is written back in the same places.

Reasoning arrives in several shapes, by provider: standard `reasoning` content blocks (LangChain
v1), Anthropic `thinking` blocks, `additional_kwargs["reasoning_content"]` (DeepSeek, and
LangChain's OpenAI-compatible readers of vLLM, SGLang and llama.cpp servers), and
`additional_kwargs["reasoning"]` (a string from servers that name the field `reasoning`, or
OpenAI's reasoning item with summary texts). Tool-call arguments sit in `tool_calls`, in the
raw text of `invalid_tool_calls`, and again in Anthropic `tool_use` / standard `tool_call`
blocks. Every one of them is read, and rewritten on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.messages import AIMessage

from ...leakage.message_check import ModelOutput

REASONING_BLOCKS = {"reasoning": "reasoning", "thinking": "thinking"}  # block type -> its text key
HIDDEN_REASONING_BLOCKS = ("redacted_thinking",)  # encrypted traces: nothing to read, dropped when stripping
CALL_BLOCKS = {"tool_use": "input", "tool_call": "args"}  # block type -> its arguments key
REASONING_FIELDS = ("reasoning_content", "reasoning")

Rewrite = Callable[[str], str]
RewriteArguments = Callable[[Mapping[str, Any]], Mapping[str, Any]]


def _field_texts(value: Any) -> list[str]:
    """The texts of a provider's reasoning field: a string, or OpenAI's reasoning item."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [str(part.get("text", "")) for part in value.get("summary") or [] if isinstance(part, Mapping)]
    return []


def _blocks(message: AIMessage) -> list[Any]:
    return message.content if isinstance(message.content, list) else []


def reasoning_texts(message: AIMessage) -> list[str]:
    texts = [str(block.get(key, "")) for block in _blocks(message) if isinstance(block, dict)
             for kind, key in REASONING_BLOCKS.items() if block.get("type") == kind]
    for name in REASONING_FIELDS:
        texts += _field_texts(message.additional_kwargs.get(name))
    return [text for text in texts if text]


def answer_texts(message: AIMessage) -> list[str]:
    if isinstance(message.content, str):
        return [message.content]
    return [str(block.get("text", "")) if isinstance(block, dict) else block for block in message.content
            if isinstance(block, str) or (isinstance(block, dict) and block.get("type") == "text")]


def read_message(message: AIMessage) -> ModelOutput:
    """The reply as the checks read it (several reasoning or text parts are joined by blank lines)."""
    arguments = [dict(call["args"]) for call in message.tool_calls]
    arguments += [{"raw": call.get("args") or ""} for call in message.invalid_tool_calls]
    return ModelOutput(reasoning="\n\n".join(reasoning_texts(message)),
                       answer="\n\n".join(text for text in answer_texts(message) if text),
                       tool_arguments=tuple(arguments))


def _rewritten_block(block: Any, rewrite_reasoning: Rewrite, rewrite_answer: Rewrite,
                     rewrite_arguments: RewriteArguments, drop_reasoning: bool) -> Any:
    if isinstance(block, str):
        return rewrite_answer(block)
    if not isinstance(block, dict):
        return block
    kind = block.get("type")
    if kind in REASONING_BLOCKS:
        key = REASONING_BLOCKS[kind]
        text = rewrite_reasoning(str(block.get(key, "")))
        return None if not text else {**block, key: text}
    if kind in HIDDEN_REASONING_BLOCKS:
        return None if drop_reasoning else block
    if kind == "text":
        return {**block, "text": rewrite_answer(str(block.get("text", "")))}
    if kind in CALL_BLOCKS and isinstance(block.get(CALL_BLOCKS[kind]), Mapping):
        return {**block, CALL_BLOCKS[kind]: dict(rewrite_arguments(block[CALL_BLOCKS[kind]]))}
    return block


def _rewritten_field(value: Any, rewrite: Rewrite) -> Any:
    if isinstance(value, str):
        return rewrite(value) or None
    if isinstance(value, Mapping) and value.get("summary"):
        summary = [{**part, "text": rewrite(str(part.get("text", "")))} if isinstance(part, Mapping) else part
                   for part in value["summary"]]
        return {**value, "summary": summary} if any(isinstance(p, Mapping) and p["text"] for p in summary) else None
    return value


def rewrite_message(message: AIMessage, rewrite_reasoning: Rewrite, rewrite_answer: Rewrite,
                    rewrite_arguments: RewriteArguments, *, drop_reasoning: bool = False) -> AIMessage:
    """The message with every reasoning part, text part and tool argument rewritten where it
    sits; a reasoning part rewritten to "" is removed (a stripped trace leaves no empty block),
    and `drop_reasoning` removes encrypted traces too."""
    if isinstance(message.content, str):
        content: Any = rewrite_answer(message.content)
    else:
        content = [new for block in message.content
                   if (new := _rewritten_block(block, rewrite_reasoning, rewrite_answer, rewrite_arguments,
                                               drop_reasoning)) is not None]
    extra = dict(message.additional_kwargs)
    for name in REASONING_FIELDS:
        if name in extra:
            value = _rewritten_field(extra[name], rewrite_reasoning)
            if value is None:
                del extra[name]
            else:
                extra[name] = value
    calls = [{**call, "args": dict(rewrite_arguments(call["args"]))} for call in message.tool_calls]
    invalid = [{**call, "args": rewrite_arguments({"raw": call.get("args") or ""})["raw"]}
               for call in message.invalid_tool_calls]
    return message.model_copy(update={"content": content, "additional_kwargs": extra, "tool_calls": calls,
                                      "invalid_tool_calls": invalid})
