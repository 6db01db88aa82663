"""RAG: the nodes retrieved for a query become the private context of its leak check.

The LLM sees only the prompt the synthesizer writes, not which parts of it came from which
node, or which nodes are private. `PrivateContextPostprocessor` sits in the query engine's
`node_postprocessors` (any engine that takes postprocessors: query engines, chat engines),
sees the nodes of each retrieval, and records their text in a context variable that
`SelfGuardLLM` reads on every call. A copy of that text in the reasoning or the answer is then
a `private_context` leak, even when the answer does not show it.

Why a postprocessor: it is where LlamaIndex hands over a query's nodes, it is explicit (you
choose what is protected, and where), and it needs no global hook. The context variable
follows the query through threads and async tasks. It holds the latest retrieval's nodes in
this thread or task until the next retrieval replaces them (or `clear_private_context()`), so a
follow-up call about the same documents stays protected.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Literal

from llama_index.core.bridge.pydantic import Field
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

_retrieved: ContextVar[tuple[str, ...]] = ContextVar("selfguard_retrieved_private_context", default=())


def retrieved_private_context() -> tuple[str, ...]:
    """The texts the last `PrivateContextPostprocessor` in this thread or task marked private."""
    return _retrieved.get()


def clear_private_context() -> None:
    """Forget the retrieved texts (the next generation is checked without them)."""
    _retrieved.set(())


class PrivateContextPostprocessor(BaseNodePostprocessor):
    """Marks retrieved nodes as private context: all of them, or only those whose metadata has
    `private: True` (the key is configurable). Returns the nodes unchanged."""

    scope: Literal["all", "private"] = Field(default="all", description="protect every node, or only private ones")
    metadata_key: str = Field(default="private", description="metadata flag that marks a node private")

    @classmethod
    def class_name(cls) -> str:
        return "PrivateContextPostprocessor"

    def _postprocess_nodes(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
                           ) -> list[NodeWithScore]:
        chosen = [n for n in nodes if self.scope == "all" or n.node.metadata.get(self.metadata_key) is True]
        _retrieved.set(tuple(n.node.get_content(metadata_mode=MetadataMode.NONE) for n in chosen))
        return nodes
