"""Tools for models whose chat template has none, and tool calls read back from the output.

Templates that take `tools=` (Qwen, Llama 3.1+, ...) render them themselves. For the others
(the embedded SmolLM2 among them) we use one documented format: the tools are listed as JSON
in the system message, the model is asked to answer a call with

    <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>

earlier calls in the history are written the same way, and tool results come back as a user
turn ("Tool result (get_weather): ..."). The parser accepts that block, or a bare JSON object
with "name" and "arguments" (or "parameters"), which small models often write instead.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

TOOL_INSTRUCTIONS = (
    "You can call these tools. To call one, reply with only a tool call, in this exact form:\n"
    '<tool_call>{{"name": "TOOL_NAME", "arguments": {{...}}}}</tool_call>\n'
    "Otherwise answer normally. Tools:\n{tools}"
)
_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def supports_tools(template: str) -> bool:
    """Whether a chat template renders a `tools` list itself."""
    return "tools" in template


def _tool_summary(tool: Mapping[str, Any]) -> dict[str, Any]:
    function = tool.get("function", tool)
    return {"name": function.get("name"), "description": function.get("description", ""),
            "parameters": function.get("parameters", {})}


def checked_tools(tools: Sequence[Mapping[str, Any]] | None) -> tuple[Mapping[str, Any], ...]:
    """OpenAI-format tool definitions, refused with the reason when a model could not be shown
    them: no name, parameters that are not a JSON-schema object, or values JSON cannot write."""
    from ..errors import InvalidSettingError

    checked = []
    for index, tool in enumerate(tools or ()):
        function = tool.get("function", tool) if isinstance(tool, Mapping) else None
        name = function.get("name") if isinstance(function, Mapping) else None
        where = f"Tool {index}" + (f" ({name!r})" if isinstance(name, str) else "")
        if not isinstance(name, str) or not name.strip():
            raise InvalidSettingError(f"{where} has no name: give tools in the OpenAI format, "
                                      '{"type": "function", "function": {"name": ..., "parameters": {...}}}.')
        parameters = function.get("parameters", {})
        if not isinstance(parameters, Mapping):
            raise InvalidSettingError(f"{where}: parameters must be a JSON-schema object, got "
                                      f"{type(parameters).__name__}.")
        try:
            json.dumps(tool)
        except (TypeError, ValueError) as error:
            raise InvalidSettingError(f"{where} cannot be written as JSON for the model ({error}): use plain "
                                      "strings, numbers, lists and objects in its schema (no Python objects as "
                                      "defaults).") from None
        checked.append(tool)
    return tuple(checked)


def inline_tools(messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None
                 ) -> list[dict[str, Any]]:
    """The conversation with the tools, earlier calls and tool results written as plain text."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role, content = message["role"], message.get("content") or ""
        if role == "assistant" and message.get("tool_calls"):
            calls = "\n".join(format_tool_call(call) for call in message["tool_calls"])
            out.append({"role": "assistant", "content": f"{content}\n{calls}".strip()})
        elif role == "tool":
            name = message.get("name") or "tool"
            out.append({"role": "user", "content": f"Tool result ({name}): {content}"})
        else:
            out.append({"role": role, "content": content})
    if tools:
        listing = json.dumps([_tool_summary(t) for t in tools], ensure_ascii=False)
        text = TOOL_INSTRUCTIONS.format(tools=listing)
        systems = [i for i, m in enumerate(out) if m["role"] == "system"]
        if systems:
            out[systems[-1]] = {**out[systems[-1]], "content": f"{out[systems[-1]]['content']}\n\n{text}"}
        else:
            out.insert(0, {"role": "system", "content": text})
    return out


def format_tool_call(call: Mapping[str, Any]) -> str:
    function = call.get("function", call)
    arguments = function.get("arguments", function.get("args", {}))
    if isinstance(arguments, str):
        with suppress(json.JSONDecodeError):
            arguments = json.loads(arguments)
    return "<tool_call>" + json.dumps({"name": function.get("name"), "arguments": arguments},
                                      ensure_ascii=False) + "</tool_call>"


@dataclass
class ParsedOutput:
    """The text left after removing tool calls, the calls that parsed, and those that did not."""

    text: str
    calls: list[dict[str, Any]] = field(default_factory=list)  # {"name", "args", "id"}
    invalid: list[dict[str, Any]] = field(default_factory=list)  # {"name", "args" (raw), "id", "error"}


def _first_json_object(text: str) -> tuple[int, int, Any] | None:
    """The first decodable JSON object in `text`: (start, end, value)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, end = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        return match.start(), end, value
    return None


def _call_from(value: Any, known: set[str]) -> dict[str, Any] | None:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict) or (known and value["name"] not in known):
        return None
    return {"name": value["name"], "args": arguments, "id": f"call_{uuid.uuid4().hex[:12]}"}


def parse_tool_calls(text: str, tool_names: Sequence[str] = ()) -> ParsedOutput:
    """Tool calls in a model's answer. A `<tool_call>` block that does not decode to a call of a
    known tool is reported as invalid (with the reason); a bare JSON object counts only when it
    names a known tool."""
    known = set(tool_names)
    blocks = list(_BLOCK.finditer(text))
    if blocks:
        parsed = ParsedOutput(text=_BLOCK.sub("", text).strip())
        for block in blocks:
            raw = block.group(1)
            found = _first_json_object(raw)
            call = _call_from(found[2], known) if found else None
            if call is not None:
                parsed.calls.append(call)
            else:
                name = found[2].get("name") if found and isinstance(found[2], dict) else None
                name = name if isinstance(name, str) else None  # a model may write any JSON value here
                reason = ("not a JSON object with 'name' and 'arguments'" if found is None or name is None
                          else f"unknown tool {name!r}" if known and name not in known
                          else "arguments are not an object")
                parsed.invalid.append({"name": name, "args": raw, "id": f"call_{uuid.uuid4().hex[:12]}",
                                       "error": f"The tool call did not parse: {reason}."})
        return parsed
    found = _first_json_object(text)
    if found is not None and known:
        call = _call_from(found[2], known)
        if call is not None:
            return ParsedOutput(text=(text[:found[0]] + text[found[1]:]).strip(), calls=[call])
    return ParsedOutput(text=text)


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
        from ..errors import InvalidSettingError

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


CHANNEL_TEMPLATE = "Tool {name}: {description}\nA question this tool answers: "


def last_question(messages: Sequence[Mapping[str, Any]]) -> str:
    """The latest user turn's text: what a tool is chosen for."""
    for message in reversed(messages):
        if message.get("role") == "user" and message.get("content"):
            return str(message["content"])
    return ""


def choose_tool(question: str, tools: Sequence[Mapping[str, Any]],
                score_texts: Callable[[Sequence[tuple[str, str]]], list[float]]) -> str:
    """The tool whose name and description make `question` most likely (see `scoring`): a small
    model asked to write the name picks the first tool whatever the question."""
    names = [t.get("function", t).get("name") for t in tools]
    if len(names) == 1 or not question.strip():
        return names[0]
    contexts = [CHANNEL_TEMPLATE.format(name=t.get("function", t).get("name"),
                                        description=t.get("function", t).get("description") or "")
                for t in tools]
    scores = score_texts([(context, question.strip()) for context in contexts])
    return names[max(range(len(names)), key=scores.__getitem__)]


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
