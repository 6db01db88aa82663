"""Tool definitions checked before a model is shown them, so a bad one fails with its reason
instead of as a template or JSON error deep in rendering."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidSettingError


def checked_tools(tools: Sequence[Mapping[str, Any]] | None) -> tuple[Mapping[str, Any], ...]:
    """OpenAI-format tool definitions, refused with the reason when a model could not be shown
    them: no name, parameters that are not a JSON-schema object, or values JSON cannot write."""
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
