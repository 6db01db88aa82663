"""Fields that adapters put around a call (run and span ids, tags) for the engine's audit record.

Adapters do not write records of their own: they set these fields, and the engine copies them
into the one record it writes per generation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_context: ContextVar[dict[str, Any] | None] = ContextVar("selfguard_audit_context", default=None)


@contextmanager
def audit_context(**fields: Any) -> Iterator[dict[str, Any]]:
    """Add fields (run ids, tags, metadata) to every audit record written inside the block.

    Nested blocks merge, the inner value winning; the context follows threads started with
    `contextvars.copy_context()` and asyncio tasks, as any ContextVar does.
    """
    merged = {**(_context.get() or {}), **fields}
    token = _context.set(merged)
    try:
        yield merged
    finally:
        _context.reset(token)


def current_audit_context() -> dict[str, Any]:
    """A copy, so a caller changing it cannot change the records of the enclosing block."""
    return dict(_context.get() or {})
