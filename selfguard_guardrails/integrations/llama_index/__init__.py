"""LlamaIndex adapter: `SelfGuardLLM` on the Self-Guard engine, its instrumentation events and the
RAG postprocessor that marks retrieved text as private context.

    from selfguard_guardrails.integrations.llama_index import SelfGuardLLM
"""

from .audit import SelfGuardAuditEventHandler, SelfGuardLeakEvent, SelfGuardSteeringEvent
from .llm import SelfGuardLLM
from .rag import PrivateContextPostprocessor

__all__ = [
    "PrivateContextPostprocessor",
    "SelfGuardAuditEventHandler",
    "SelfGuardLLM",
    "SelfGuardLeakEvent",
    "SelfGuardSteeringEvent",
]
