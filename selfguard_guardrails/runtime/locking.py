"""One lock per loaded model, shared by every engine that wraps it.

Steering hooks are global to a model, so two engines on the same model (or a call made while
a stream on the same thread is still open) must not overlap. Other threads wait their turn;
the thread that already holds the model gets a clear error instead of a silent deadlock.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import SelfGuardError


class EngineBusyError(SelfGuardError):
    """This thread started a call on the model that has not finished (usually an open stream)."""


class _ModelLock:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owner: int | None = None


_locks: weakref.WeakKeyDictionary[object, _ModelLock] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


@contextmanager
def hold_model(model: object) -> Iterator[None]:
    """Hold the model for one generation; wait for other threads, refuse re-entry on this one."""
    with _registry_lock:
        entry = _locks.setdefault(model, _ModelLock())
    if entry.owner == threading.get_ident():
        raise EngineBusyError(
            "This thread already has an unfinished call on this model (an open stream?). Finish the "
            "stream or call its close() before starting another call."
        )
    with entry.lock:
        entry.owner = threading.get_ident()
        try:
            yield
        finally:
            entry.owner = None
