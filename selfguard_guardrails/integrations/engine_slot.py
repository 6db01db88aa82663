"""The engine an adapter wraps: given at construction, or loaded on first use, once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from ..engine.selfguard import SelfGuard
from ..errors import InvalidSettingError


class EngineSlot:
    """Construction stays instant (frameworks build models eagerly, in configs and tests); the
    first call loads the model, and two threads calling at once still load it only once."""

    def __init__(self, engine: SelfGuard | None = None) -> None:
        self._engine = engine
        self._lock = threading.Lock()

    @classmethod
    def for_adapter(cls, adapter: str, engine: SelfGuard | None, *, model: str | None,
                    engine_options: Mapping[str, Any]) -> EngineSlot:
        """The slot of an adapter; options for loading an engine are refused when one is given,
        since they would change nothing."""
        unused = [name for name, value in (("model", model), ("engine_options", engine_options)) if value]
        if engine is not None and unused:
            raise InvalidSettingError(
                f"{adapter}(engine=...) uses the engine given, so {' and '.join(unused)} would change nothing: "
                "give them to SelfGuard.from_pretrained(...) when you build that engine, or leave out engine=.")
        return cls(engine)

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    def get(self, load: Callable[[], SelfGuard]) -> SelfGuard:
        with self._lock:
            if self._engine is None:
                self._engine = load()
            return self._engine
