"""LangChain adapter: `ChatSelfGuard`, a chat model on the Self-Guard engine, its audit handler, and
the LLM refusal judge (any LangChain chat model judging answers for `selfguard eval`).

    from selfguard_guardrails.integrations.langchain import ChatSelfGuard

Names load on first use, so that `llm_judge` can say how to install langchain-core when it is missing.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {"ChatSelfGuard": "chat_model", "SelfGuardAuditHandler": "audit", "SelfGuardMiddleware": "middleware"}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
