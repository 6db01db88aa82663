"""What a loaded model is: its sizes read from the config, its fingerprint and its context window.

Steering vectors are checked against the fingerprint (architecture, layer count, hidden size,
vocab size and the identity of the weight files), so every reader of a model's sizes goes
through this module and they cannot disagree about which config attribute counts.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from ...errors import InvalidSettingError

__all__ = [
    "CONTEXT_ATTRS",
    "DEFAULT_CONTEXT_WINDOW",
    "HIDDEN_SIZE_ATTRS",
    "NUM_LAYERS_ATTRS",
    "context_window",
    "directory_identity",
    "hidden_size",
    "model_fingerprint",
    "num_layers",
    "object_identity",
]

logger = logging.getLogger(__name__)

# Architectures name the same size differently (GPT-2 n_embd, T5 d_model, ...); first match wins.
HIDDEN_SIZE_ATTRS = ("hidden_size", "n_embd", "d_model", "dim")
NUM_LAYERS_ATTRS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
CONTEXT_ATTRS = (
    "max_position_embeddings",
    "n_positions",
    "max_sequence_length",
    "seq_length",
    "n_ctx",
    "max_seq_len",
)
DEFAULT_CONTEXT_WINDOW = 2048

_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_SAMPLE_BYTES = 64 * 1024
# Config keys that describe how an object was loaded, not which model it is.
_VOLATILE_CONFIG_KEYS = (
    "_name_or_path",
    "_commit_hash",
    "transformers_version",
    "dtype",
    "torch_dtype",
    "_attn_implementation",
    "_attn_implementation_autoset",
    "_experts_implementation",
)


def _text_config(config: Any) -> Any:
    getter = getattr(config, "get_text_config", None)
    if callable(getter):
        try:
            return getter()
        except Exception:
            return config
    return config


def _config_pair(config: Any) -> tuple[Any, Any]:
    """The text config, where a multimodal model keeps its language model's sizes, then the config itself."""
    return _text_config(config), config


def _configs(model_or_config: Any) -> tuple[Any, Any]:
    """Accepts a model or a config, so callers holding either read sizes the same way."""
    if isinstance(model_or_config, torch.nn.Module):
        return _config_pair(getattr(model_or_config, "config", None))
    return _config_pair(getattr(model_or_config, "config", model_or_config))


def _first_attr(configs: tuple[Any, ...], names: tuple[str, ...]) -> int | None:
    for cfg in configs:
        for name in names:
            value = getattr(cfg, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def _required(model_or_config: Any, names: tuple[str, ...], what: str) -> int:
    value = _first_attr(_configs(model_or_config), names)
    if value is None:
        raise InvalidSettingError(
            f"The model config names no {what} (none of {', '.join(names)}, in it or its text config); "
            "this model is not supported."
        )
    return value


def hidden_size(model_or_config: Any) -> int:
    """Hidden size (residual-stream width) of a model or its config: the one reader, so no two callers disagree."""
    return _required(model_or_config, HIDDEN_SIZE_ATTRS, "hidden size")


def num_layers(model_or_config: Any) -> int:
    """Decoder-layer count a model's config declares (the fingerprint's figure, not a count of modules)."""
    return _required(model_or_config, NUM_LAYERS_ATTRS, "layer count")


def model_fingerprint(model: Any, weight_identity: str) -> str:
    """Short hex digest of architecture class, layers, hidden size, vocab size and weight identity."""
    return config_fingerprint(type(model).__name__, getattr(model, "config", None), weight_identity)


def config_fingerprint(architecture: str, config: Any, weight_identity: str) -> str:
    """`model_fingerprint` from the model class's name and its config, for a runtime that holds the
    weights without a transformers model (llama.cpp): the same GGUF gives the same fingerprint."""
    configs = _config_pair(config)
    # A size the config does not name enters as "None", so such models still get a fingerprint.
    layers = _first_attr(configs, NUM_LAYERS_ATTRS)
    hidden = _first_attr(configs, HIDDEN_SIZE_ATTRS)
    vocab = _first_attr(configs, ("vocab_size",))
    parts = [architecture, str(layers), str(hidden), str(vocab), weight_identity]
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:16]


def context_window(model: Any) -> int:
    """Tokens the model attends over, from its config; a warned default when the config names none."""
    value = _first_attr(_config_pair(getattr(model, "config", None)), CONTEXT_ATTRS)
    if value is None:
        logger.warning(
            "The model config names no context length (%s); assuming %d tokens.",
            ", ".join(CONTEXT_ATTRS),
            DEFAULT_CONTEXT_WINDOW,
        )
        return DEFAULT_CONTEXT_WINDOW
    return value


def _sample_digest(path: Path, size: int) -> str:
    """Digest of three small windows (start, middle, end) of a weight file: cheap, not a full hash."""
    h = hashlib.sha256()
    offsets = sorted({0, max(0, size // 2 - _SAMPLE_BYTES // 2), max(0, size - _SAMPLE_BYTES)})
    with path.open("rb") as fh:
        for offset in offsets:
            fh.seek(offset)
            h.update(fh.read(_SAMPLE_BYTES))
    return h.hexdigest()


def directory_identity(path: Path) -> str:
    """Identity of a model directory: config.json content plus weight-file names, sizes and samples."""
    h = hashlib.sha256()
    config = path / "config.json"
    if config.is_file():
        h.update(b"config.json\0")
        h.update(config.read_bytes())
    for weight in sorted(p for p in path.iterdir() if p.suffix in _WEIGHT_SUFFIXES and p.is_file()):
        size = weight.stat().st_size
        h.update(f"\0{weight.name}\0{size}\0{_sample_digest(weight, size)}".encode())
    return "files:" + h.hexdigest()


def object_identity(model: Any) -> str:
    """Identity of an in-memory model: its config (minus load-time keys) and parameter names/shapes."""
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        data = {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}
        h.update(json.dumps(data, sort_keys=True, default=str).encode("utf-8"))
    for name, param in model.named_parameters():
        h.update(f"\0{name}:{tuple(param.shape)}".encode())
    return "object:" + h.hexdigest()
