"""The history of a turn with tools: whether the latest question has its tool results, and the
conversation with those results folded into the question, for a small model that copies its
earlier call instead of answering from the result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def has_results_since_question(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the latest user turn already has tool results after it: time to answer it."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return False
        if message.get("role") == "tool":
            return True
    return False


def fold_tool_results(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The conversation with the tool calls and results since the last user turn folded into
    that turn as "Tool result (name): ..." lines, so there is no earlier call to copy."""
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users:
        return [dict(m) for m in messages]
    last = users[-1]
    results = [f"Tool result ({m.get('name') or 'tool'}): {m.get('content') or ''}"
               for m in messages[last + 1:] if m.get("role") == "tool"]
    question = dict(messages[last])
    question["content"] = "\n\n".join([str(question.get("content") or ""), *results])
    rest = [dict(m) for m in messages[last + 1:] if m.get("role") not in ("tool", "assistant")]
    return [dict(m) for m in messages[:last]] + [question] + rest
