"""JSON of a given schema from a small model: we write the structure, the model writes the values.

A 135M model breaks JSON often (an unclosed brace, a bare value, a key it invents). Here the
keys, braces, commas and quotes are ours; the model continues the text only where a value
goes, and each value ends at the character that closes it (the quote of a string, the comma or
brace after a number). The result has the schema's shape by construction. Covered: nested
objects, arrays (the model decides whether another item follows), booleans and enums (picked
by likelihood among the allowed values when the caller can score, else matched to the
nearest), optional values and `$ref`s to `$defs` (as pydantic writes them); only the required
properties of an object are filled. A schema with anything else (free-form objects, `oneOf`
of several shapes) is not guided: `supports` says so, and the caller generates the whole call
and parses it instead.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# (text so far, stop strings, token budget) -> what the model writes next, cut at the first stop
Continue = Callable[[str, Sequence[str], int], str]
# (text so far, the JSON texts that may follow) -> the index of the one the model finds likeliest
Choose = Callable[[str, Sequence[str]], int]

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


def fill(schema: Mapping[str, Any], start: str, continue_text: Continue,
         choose: Choose | None = None) -> tuple[Any, str] | None:
    """A value of `schema` written after `start`, and the text with it; None when the model
    wrote a number that does not parse. With `choose`, booleans and enums are picked by
    likelihood among their allowed values (else written, and matched to the nearest)."""
    try:
        return _fill(schema, schema, start, _Model(continue_text, choose))
    except _Unfillable:
        return None


class _Model:
    def __init__(self, write: Continue, choose: Choose | None) -> None:
        self.write, self.choose = write, choose

    def __call__(self, text: str, stop: Sequence[str], budget: int) -> str:
        return self.write(text, stop, budget)

    def pick(self, text: str, values: Sequence[Any]) -> Any | None:
        if self.choose is None:
            return None
        return values[self.choose(text, [json.dumps(v) for v in values])]


def _fill(schema: Mapping[str, Any], root: Mapping[str, Any], text: str, model: _Model) -> tuple[Any, str]:
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
    allowed = list(spec["enum"]) if spec.get("enum") else [True, False] if kind == "boolean" else None
    if allowed is not None:
        picked = model.pick(text, allowed)
        if picked is not None:
            return picked, text + json.dumps(picked)
    if kind == "string":
        written = model(text + '"', ['"', "\n"], STRING_TOKENS)
        if allowed:
            written = (difflib.get_close_matches(written, [str(v) for v in allowed], n=1, cutoff=0.0)
                       or [str(allowed[0])])[0]
        return written, text + json.dumps(written)
    raw = model(text, [",", "}", "]", "\n"], NUMBER_TOKENS).strip()
    return (value := _scalar(raw, kind)), text + json.dumps(value)


def _scalar(raw: str, kind: str | None) -> Any:
    """The number or boolean a model wrote, read leniently ("3 nights" is 3, "yes" is true)."""
    if kind == "boolean":
        word = raw.lower()[:1]
        if word in ("t", "y", "1") or word in ("f", "n", "0"):
            return word in ("t", "y", "1")
        raise _Unfillable(raw)
    found = re.match(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", raw.replace(",", ""))
    if found is None:
        raise _Unfillable(raw)
    number = float(found.group(0))
    if kind == "integer":
        if not number.is_integer():
            raise _Unfillable(raw)
        return int(number)
    return number


def _fill_array(spec: Mapping[str, Any], root: Mapping[str, Any], text: str, model: _Model) -> tuple[list, str]:
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
