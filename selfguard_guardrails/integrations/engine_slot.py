"""The engine an adapter wraps: given at construction, or loaded on first use, once."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..engine import SelfGuard


class EngineSlot:
    """Construction stays instant (frameworks build models eagerly, in configs and tests); the
    first call loads the model, and two threads calling at once still load it only once."""

    def __init__(self, engine: SelfGuard | None = None) -> None:
        self._engine = engine
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    def get(self, load: Callable[[], SelfGuard]) -> SelfGuard:
        with self._lock:
            if self._engine is None:
                self._engine = load()
            return self._engine
