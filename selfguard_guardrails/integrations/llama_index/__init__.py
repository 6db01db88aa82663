"""LlamaIndex adapter: `SelfGuardLLM` on the Self-Guard engine, `GuardedLLM` (the leak checks,
policies and audit around any LlamaIndex LLM), the instrumentation events and the RAG
postprocessor that marks retrieved text as private context.

    from selfguard_guardrails.integrations.llama_index import GuardedLLM, SelfGuardLLM
"""

from .audit import SelfGuardAuditEventHandler, SelfGuardLeakEvent, SelfGuardSteeringEvent
from .guarded_llm import GuardedLLM
from .llm import SelfGuardLLM
from .rag import PrivateContextPostprocessor

__all__ = [
    "GuardedLLM",
    "PrivateContextPostprocessor",
    "SelfGuardAuditEventHandler",
    "SelfGuardLLM",
    "SelfGuardLeakEvent",
    "SelfGuardSteeringEvent",
]
