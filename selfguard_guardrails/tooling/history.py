"""The history of a turn with tools: which calls already have results, and the conversation with
those results folded into the question, for a small model that copies its earlier call instead
of answering from the result."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def _answered_calls(messages: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(name, arguments as JSON) of the calls in the history that have a tool result."""
    answered = {m.get("tool_call_id") for m in messages if m.get("role") == "tool"}
    calls = []
    for message in messages:
        for call in message.get("tool_calls") or []:
            function = call.get("function", call)
            if call.get("id") in answered:
                calls.append((function.get("name"), json.dumps(function.get("arguments"), sort_keys=True)))
    return calls


def repeats_answered_calls(calls: Sequence[Mapping[str, Any]], messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether every call repeats one whose result is already in the history: a small model
    reading its own earlier call copies it instead of answering from the result."""
    answered = _answered_calls(messages)
    return bool(calls) and all((c["name"], json.dumps(c["args"], sort_keys=True)) in answered for c in calls)


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
