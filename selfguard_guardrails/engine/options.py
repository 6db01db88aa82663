"""Keyword options a method does not take: an error naming the call that was made, what it
accepts, and where a misplaced option belongs (the engine's options are split between building
it and calling it, and the wrong half is the usual slip)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

from ..errors import UnknownOptionError

P = ParamSpec("P")
R = TypeVar("R")

_BUILD = "SelfGuard.from_pretrained"
_WHERE_IT_GOES = {
    "setting": f"it is an engine option: {_BUILD}(setting=SteeringSetting(...)), or guard.use_setting(...) on a built "
               "engine",
    "gate": f"it is an engine option: {_BUILD}(gate=GateSetting(...)), or guard.use_gate(...) on a built engine",
    "vector": f"it is an engine option: {_BUILD}(vector=...), or guard.use_vector(...) on a built engine",
    "strength": f"λ is part of the steering setting: {_BUILD}(setting=SteeringSetting(layers=..., strength=...)); "
                "for the λ of a fired gate in guarded mode, gate=GateSetting(strength=...)",
    "layers": f"the layers are part of the steering setting: {_BUILD}(setting=SteeringSetting(layers=..., "
              "strength=...))",
    "scope": f"the scope is part of the steering setting: {_BUILD}(setting=SteeringSetting(..., scope=...))",
    "max_tokens": "the token budget is max_new_tokens",
    "model": f"the model is chosen when the engine is built: {_BUILD}(SOURCE)",
}
_ENGINE_OPTIONS = ("safety_prompt", "thinking", "think_in_tags", "leak_policy", "leak_checks", "audit",
                   "audit_failure", "cache_dir", "progress")
_LOAD_OPTIONS = ("dtype", "device", "threads", "allow_download", "trust_remote_code")
_CALL_OPTIONS = ("max_new_tokens", "min_new_tokens", "temperature", "top_p", "stop", "seed", "private_context",
                 "tools", "prefix", "audit_sinks", "audit_fields")


def _where(name: str, call: str) -> str:
    if name in _WHERE_IT_GOES:
        return _WHERE_IT_GOES[name]
    if name in _ENGINE_OPTIONS:
        return f"it is an engine option: give it to {_BUILD}({name}=...)"
    if name in _LOAD_OPTIONS:
        return f"it is a loading option of {_BUILD}()"
    if name in _CALL_OPTIONS and call.endswith("from_pretrained"):
        return "it is a generation option: give it to generate(), stream() or batch()"
    return ""


def check_options(call: str, given: Iterable[str], accepted: Iterable[str]) -> None:
    """Raise `UnknownOptionError` for the first name in `given` that `call` does not accept."""
    known = set(accepted)
    unknown = [name for name in given if name not in known]
    if not unknown:
        return
    name = unknown[0]
    where = _where(name, call)
    raise UnknownOptionError(
        f"{call}() got an unexpected keyword argument {name!r}" + (f": {where}" if where else "")
        + f". {call}() accepts: {', '.join(sorted(known))}.")


@functools.cache
def accepted_options(function: Callable[..., Any], *, leave_out: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The keyword options of `function` (positional-only and *args/**kwargs left out); read once
    per function, since `generate` asks on every call."""
    skipped = {"self", *leave_out}
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(name for name, p in inspect.signature(function).parameters.items()
                 if p.kind in kinds and name not in skipped)


def explains_unknown_options(method: Callable[P, R]) -> Callable[P, R]:
    """Wrap a method so an unknown keyword option raises `check_options`' error, not a bare TypeError."""
    accepted = accepted_options(method)
    call = method.__qualname__

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        check_options(call, kwargs, accepted)
        return method(*args, **kwargs)

    return wrapper
