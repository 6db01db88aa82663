"""JSON of a given schema from a small model: we write the structure, the model writes the values.

A 135M model breaks JSON often (an unclosed brace, a bare value, a key it invents). Here the
keys, braces, commas and quotes are ours; the model continues the text only where a value
goes, and each value ends at the character that closes it (the quote of a string, the comma or
brace after a number). The result has the schema's shape by construction. Nested objects,
arrays (the model decides whether another item follows), enums (matched to the nearest
allowed value), optional values and `$ref`s to `$defs` (as pydantic writes them) are handled;
only the required properties of an object are filled. A schema with anything else (free-form
objects, `oneOf` of several shapes) is not guided: `supports` says so, and the caller
generates the whole call and parses it instead.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# (text so far, stop strings, token budget) -> what the model writes next, cut at the first stop
Continue = Callable[[str, Sequence[str], int], str]

STRING_TOKENS, NUMBER_TOKENS, MAX_ITEMS = 48, 12, 8
_SCALARS = ("string", "integer", "number", "boolean")


class _Unfillable(Exception):
    """A value the model wrote that does not parse as its type (a number that is not one)."""


def _resolve(spec: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a local `$ref` ("#/$defs/Name") and unwrap Optional[X] (anyOf X | null)."""
    for _ in range(32):  # a ref chain longer than this is a cycle
        if "$ref" in spec:
            node: Any = root
            for part in str(spec["$ref"]).lstrip("#/").split("/"):
                node = node.get(part, {}) if isinstance(node, Mapping) else {}
            spec = node
            continue
        options = spec.get("anyOf") or spec.get("oneOf")
        if isinstance(options, list):
            real = [s for s in options if s.get("type") != "null"]
            if len(real) == 1:
                spec = real[0]
                continue
        return spec
    return {}


def _kind(spec: Mapping[str, Any]) -> str | None:
    kind = spec.get("type")
    if kind is None and spec.get("enum"):
        kind = "string"
    if kind == "object" and not spec.get("properties") and spec.get("required"):
        return None
    return kind if kind in (*_SCALARS, "object", "array") else None


def supports(schema: Mapping[str, Any], root: Mapping[str, Any] | None = None, depth: int = 0) -> bool:
    """Whether `fill` can write a value of this schema (recursively)."""
    root = schema if root is None else root
    spec = _resolve(schema, root)
    kind = _kind(spec)
    if kind is None or depth > 8:
        return False
    if kind == "object":
        properties = spec.get("properties") or {}
        return all(name in properties and supports(properties[name], root, depth + 1)
                   for name in spec.get("required", []))
    if kind == "array":
        return isinstance(spec.get("items"), Mapping) and supports(spec["items"], root, depth + 1)
    return True


def fill(schema: Mapping[str, Any], start: str, continue_text: Continue) -> tuple[Any, str] | None:
    """A value of `schema` written after `start`, and the text with it; None when the model
    wrote a number or boolean that does not parse."""
    try:
        return _fill(schema, schema, start, continue_text)
    except _Unfillable:
        return None


def _fill(schema: Mapping[str, Any], root: Mapping[str, Any], text: str, model: Continue) -> tuple[Any, str]:
    spec = _resolve(schema, root)
    kind = _kind(spec)
    if kind == "object":
        properties = spec.get("properties") or {}
        value: dict[str, Any] = {}
        text += "{"
        for index, name in enumerate(n for n in spec.get("required", []) if n in properties):
            text += ("" if index == 0 else ", ") + json.dumps(name) + ": "
            value[name], text = _fill(properties[name], root, text, model)
        return value, text + "}"
    if kind == "array":
        return _fill_array(spec, root, text, model)
    if kind == "string":
        written = model(text + '"', ['"', "\n"], STRING_TOKENS)
        if spec.get("enum"):
            allowed = [str(v) for v in spec["enum"]]
            written = (difflib.get_close_matches(written, allowed, n=1, cutoff=0.0) or allowed)[0]
        return written, text + json.dumps(written)
    raw = model(text, [",", "}", "]", "\n"], NUMBER_TOKENS).strip()
    try:
        number: Any = ({"true": True, "false": False}[raw.lower()] if kind == "boolean"
                       else int(raw) if kind == "integer" else float(raw))
    except (KeyError, ValueError):
        raise _Unfillable(raw) from None
    return number, text + json.dumps(number)


def _fill_array(spec: Mapping[str, Any], root: Mapping[str, Any], text: str, model: Continue) -> tuple[list, str]:
    """Items while the model goes on: after `[` and after each item, its next character says
    whether another item follows (`,`) or the list ends."""
    items: list[Any] = []
    text += "["
    minimum = int(spec.get("minItems", 0) or 0)
    maximum = min(int(spec.get("maxItems", MAX_ITEMS) or MAX_ITEMS), MAX_ITEMS)
    while len(items) < maximum:
        if len(items) >= minimum:
            following = model(text, ["\n"], 1).lstrip()
            more = following.startswith(",") if items else bool(following) and not following.startswith("]")
            if not more:
                break
        item, text = _fill(spec["items"], root, text + (", " if items else ""), model)
        items.append(item)
    return items, text + "]"
