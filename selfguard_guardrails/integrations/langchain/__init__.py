"""LangChain adapter: `ChatSelfGuard`, a chat model on the Self-Guard engine, and its audit handler.

    from selfguard_guardrails.integrations.langchain import ChatSelfGuard
"""

from .audit import SelfGuardAuditHandler
from .chat_model import ChatSelfGuard

__all__ = ["ChatSelfGuard", "SelfGuardAuditHandler"]
