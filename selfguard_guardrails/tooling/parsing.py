"""Tool calls read back from a model's answer, in the format `runtime.chat` writes them.

A `<tool_call>` block is read, and also a bare JSON object with "name" and "arguments" (or
"parameters"), which small models often write instead of the block.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


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
