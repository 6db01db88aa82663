"""selfguard-guardrails: Self-Guard (safety prompting + safety activation steering) for local HF models.

Heavy pieces (torch, transformers) load on first use of the names below, so that
`import selfguard_guardrails` stays cheap and LangChain/LlamaIndex are never imported here.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from . import moved_modules

__version__ = "0.1.0"

_EXPORTS = {
    "SelfGuard": "engine",
    "GenerationResult": "results",
    "StreamPiece": "results",
    "Usage": "results",
    "SteeringApplied": "results",
    "Timings": "results",
    "Mode": "settings",
    "SteeringSetting": "settings",
    "GateSetting": "settings",
    "SafetyPrompt": "method.prompting",
    "SteeringVector": "method.vector",
    "steer": "method.steering",
    "extract_steering_vector": "method.extraction",
    "load_model": "runtime.loading",
    "LoadedModel": "runtime.loading",
    "Channel": "runtime.reasoning",
    "ReasoningSplit": "runtime.reasoning",
}

__all__ = ["__version__", *_EXPORTS]

moved_modules.install()


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    errors = import_module(".errors", __name__)
    if name in vars(errors):
        return vars(errors)[name]
    raise AttributeError(f"module 'selfguard_guardrails' has no attribute {name!r}")
