"""Which tool a call names, and how the answer is started so that it can only be that call.

A 135M model asked to write a tool's name picks the first tool whatever the question, and with
tools offered it rarely calls one unprompted. So the tool is chosen by likelihood (`choose_tool`),
and when the model may also answer without a tool ("auto"), an answer channel competes with the
tools' (`choose_tool_or_answer`); the call is then started for it up to its arguments
(`forced_call_prefix`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import InvalidSettingError

CHANNEL_TEMPLATE = "Tool {name}: {description}\nA question this tool answers: "
# The channel of a question answered without a tool, scored against the tools' channels.
ANSWER_CHANNEL = CHANNEL_TEMPLATE.format(
    name="chat", description="Talk, write, explain and answer general knowledge questions directly.")
# How much more likely (log-probability, nats) a tool's channel must make the question than the
# answer channel for a call: calling a tool the question does not need costs more than answering.
CALL_MARGIN = 1.0


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


def _channel(tool: Mapping[str, Any]) -> str:
    function = tool.get("function", tool)
    return CHANNEL_TEMPLATE.format(name=function.get("name"), description=function.get("description") or "")


def choose_tool(question: str, tools: Sequence[Mapping[str, Any]],
                score_texts: Callable[[Sequence[tuple[str, str]]], list[float]]) -> str:
    """The tool whose name and description make `question` most likely (see `runtime.logprobs`): a small
    model asked to write the name picks the first tool whatever the question."""
    names = [t.get("function", t).get("name") for t in tools]
    if len(names) == 1 or not question.strip():
        return names[0]
    scores = score_texts([(_channel(tool), question.strip()) for tool in tools])
    return names[max(range(len(names)), key=scores.__getitem__)]


def choose_tool_or_answer(question: str, tools: Sequence[Mapping[str, Any]],
                          score_texts: Callable[[Sequence[tuple[str, str]]], list[float]]) -> str | None:
    """The tool `question` is about, or None when it is better answered without one: the most
    likely tool's channel must beat the answer channel by `CALL_MARGIN`. One scoring pass over the
    tools' channels and the answer channel."""
    if not question.strip():
        return None
    scores = score_texts([(context, question.strip()) for context in [*map(_channel, tools), ANSWER_CHANNEL]])
    best = max(range(len(tools)), key=scores.__getitem__)
    return tools[best].get("function", tools[best]).get("name") if scores[best] > scores[-1] + CALL_MARGIN else None
