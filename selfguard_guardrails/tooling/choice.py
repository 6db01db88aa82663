"""Which tool a forced call names, and how the answer is started so that it can only be that call.

A 135M model asked to write a tool's name picks the first tool whatever the question, so when
it may choose, the tool is chosen by likelihood (`choose_tool`); the call is then started for
it up to its arguments (`forced_call_prefix`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import InvalidSettingError

CHANNEL_TEMPLATE = "Tool {name}: {description}\nA question this tool answers: "


def forced_call_prefix(tools: Sequence[Mapping[str, Any]] | None, choice: Any) -> str:
    """The start of an answer that can only be a tool call, for `tool_choice` "any"/"required"
    (the tool's name too when there is one tool) or a tool's name ("" when nothing is forced)."""
    if not tools or choice in (None, "auto", "none", False):
        return ""
    names = [t.get("function", t).get("name") for t in tools]
    if isinstance(choice, Mapping):
        choice = choice.get("function", choice).get("name")
    if choice in ("any", "required", True):
        choice = names[0] if len(names) == 1 else None
    elif choice not in names:
        raise InvalidSettingError(f"tool_choice names {choice!r}, which is not a bound tool ({', '.join(names)}).")
    if not choice:
        return '<tool_call>{"name": "'
    return '<tool_call>{"name": ' + json.dumps(choice) + ', "arguments": {' + _first_key(tools[names.index(choice)])


def forced_tool_name(prefix: str) -> str | None:
    """The tool a `forced_call_prefix` names (None when the model chooses)."""
    found = re.match(r'<tool_call>\{"name": ("(?:[^"\\]|\\.)*")', prefix)
    return json.loads(found.group(1)) if found else None


def _first_key(tool: Mapping[str, Any]) -> str:
    """The arguments' first key, written for the model when the schema names one (a small model
    otherwise often writes a bare value); "" when the tool takes no arguments or any."""
    parameters = tool.get("function", tool).get("parameters", {}) or {}
    properties = list((parameters.get("properties") or {}).keys())
    required = [p for p in parameters.get("required", []) if p in properties] or properties[:1]
    return json.dumps(required[0]) + ": " if required else ""


def last_question(messages: Sequence[Mapping[str, Any]]) -> str:
    """The latest user turn's text: what a tool is chosen for."""
    for message in reversed(messages):
        if message.get("role") == "user" and message.get("content"):
            return str(message["content"])
    return ""


def choose_tool(question: str, tools: Sequence[Mapping[str, Any]],
                score_texts: Callable[[Sequence[tuple[str, str]]], list[float]]) -> str:
    """The tool whose name and description make `question` most likely (see `runtime.logprobs`): a small
    model asked to write the name picks the first tool whatever the question."""
    names = [t.get("function", t).get("name") for t in tools]
    if len(names) == 1 or not question.strip():
        return names[0]
    contexts = [CHANNEL_TEMPLATE.format(name=t.get("function", t).get("name"),
                                        description=t.get("function", t).get("description") or "")
                for t in tools]
    scores = score_texts([(context, question.strip()) for context in contexts])
    return names[max(range(len(names)), key=scores.__getitem__)]
