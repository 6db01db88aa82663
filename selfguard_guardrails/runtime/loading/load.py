"""Resolve a model source and load it: dispatch by kind, then finish the model for the engine."""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from ...errors import InvalidSettingError, ModelNotFoundError
from .environment import auto_threads, resolve_device, resolve_dtype, set_torch_threads
from .gguf import has_gguf_magic, load_gguf
from .hf import load_hub, load_local_dir
from .identity import context_window, model_fingerprint, object_identity
from .locations import EMBEDDED_MODEL_NAME, EMBEDDED_REINSTALL, default_cache_dir, embedded_gguf_path
from .progress import progress_bars

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["LoadedModel", "load_model"]

logger = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A model ready for the engine: eval mode, left-padding tokenizer, and its identity.

    `model` is the transformers model; None when another runtime (`runtime`, llama.cpp) holds
    the weights, and then the tools that need PyTorch hooks everywhere (extraction, calibration,
    perplexity) ask for the transformers runtime through `torch_model`."""

    model: PreTrainedModel | None = field(repr=False)
    tokenizer: PreTrainedTokenizerBase = field(repr=False)
    name: str
    fingerprint: str
    context_window: int
    source: str  # "embedded" | "gguf" | "local" | "hub" | "object"
    runtime: Any = field(default=None, repr=False)  # a ModelRuntime other than transformers, or None

    def torch_model(self, purpose: str) -> PreTrainedModel:
        """The transformers model, or a clear error naming `purpose` when another runtime runs it."""
        if self.model is None:
            raise InvalidSettingError(f"{purpose} needs the transformers runtime (PyTorch hooks on every layer); "
                                      f"{self.name} is loaded on another runtime. Load it with "
                                      "runtime='transformers' for this, then use the result on any runtime.")
        return self.model


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        elif getattr(tokenizer, "unk_token", None) is not None:
            logger.warning("The tokenizer has no pad or eos token; padding with its unk token.")
            tokenizer.pad_token = tokenizer.unk_token
        else:
            first = tokenizer.convert_ids_to_tokens(0)
            logger.warning("The tokenizer has no pad, eos or unk token; padding with token id 0 (%r).", first)
            tokenizer.pad_token = first
    return tokenizer


def _looks_like_path(text: str) -> bool:
    """Strings that cannot be hub ids ("org/name") are treated as paths."""
    return (
        os.path.isabs(text)
        or text.startswith((".", "~"))
        or text.lower().endswith(".gguf")
        or "\\" in text
        or text.count("/") > 1
    )


def _finish(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    device: str | torch.device | None,
    name: str,
    identity: str,
    source: str,
) -> LoadedModel:
    if device is not None:
        try:
            model = model.to(device)  # type: ignore[arg-type]  # transformers types PreTrainedModel.to via @wraps, unbound
        except (RuntimeError, AssertionError, ValueError) as exc:
            raise InvalidSettingError(f"Cannot move the model to device {device!r}: {exc}") from exc
        generation_config = getattr(model, "generation_config", None)
        if generation_config is not None and generation_config.pad_token_id is None:
            generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        fingerprint=model_fingerprint(model, identity),
        context_window=context_window(model),
        source=source,
    )


def load_model(
    source: str | os.PathLike | tuple[PreTrainedModel, PreTrainedTokenizerBase] | None = None,
    *,
    dtype: str | torch.dtype = "float32",
    device: str = "cpu",
    threads: int | Literal["auto"] | None = "auto",
    cache_dir: str | os.PathLike | None = None,
    allow_download: bool = False,
    trust_remote_code: bool = False,
    progress: bool = True,
) -> LoadedModel:
    """Resolve ``source`` and load it for the engine.

    ``source`` is ``None`` (the embedded SmolLM2-135M-Instruct), a ``.gguf`` path, a local
    model directory, a Hugging Face hub id (from the local HF cache unless
    ``allow_download``), or a ``(model, tokenizer)`` pair. A pair is wrapped as given:
    ``dtype`` and ``device`` are not applied to it, and its tokenizer is copied before its
    padding is set to the left.

    GGUF files are dequantized once and cached under ``cache_dir`` (default
    :func:`default_cache_dir`). ``threads`` sets torch's thread count (``None`` keeps it; "auto", the default, uses one
    thread for models under a billion parameters on the CPU unless OMP_NUM_THREADS is set).
    ``progress`` shows tqdm bars on stderr; nothing is ever printed to stdout.
    """
    torch_dtype = resolve_dtype(dtype)
    device = resolve_device(device)
    set_torch_threads(threads)
    started = time.perf_counter()

    if isinstance(source, tuple):
        if len(source) != 2:
            raise InvalidSettingError("A model source tuple must be (model, tokenizer).")
        model, tokenizer = source
        if not hasattr(model, "config") or not callable(tokenizer):
            raise InvalidSettingError(
                "A model source tuple must be (PreTrainedModel, PreTrainedTokenizer); got "
                f"({type(model).__name__}, {type(tokenizer).__name__})."
            )
        tokenizer = prepare_tokenizer(copy.deepcopy(tokenizer))
        name = getattr(model.config, "_name_or_path", "") or type(model).__name__
        return _finish(
            model, tokenizer, device=None, name=name, identity=object_identity(model), source="object"
        )

    if source is not None and not isinstance(source, (str, os.PathLike)):
        raise InvalidSettingError(
            "source must be None (embedded default), a path, a hub id or a (model, tokenizer) pair; "
            f"got {type(source).__name__}."
        )

    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    with progress_bars(progress):
        if source is None:
            model, tokenizer, identity = load_gguf(
                embedded_gguf_path(),
                torch_dtype=torch_dtype,
                cache_root=root,
                progress=progress,
                fix=f"Reinstall the embedded model with `{EMBEDDED_REINSTALL}`.",
            )
            name, kind = EMBEDDED_MODEL_NAME, "embedded"
        else:
            model, tokenizer, identity, name, kind = _load_from_reference(
                source,
                torch_dtype=torch_dtype,
                cache_root=root,
                progress=progress,
                allow_download=allow_download,
                trust_remote_code=trust_remote_code,
            )

    loaded = _finish(
        model, prepare_tokenizer(tokenizer), device=device, name=name, identity=identity, source=kind
    )
    if threads == "auto":
        auto_threads(loaded.model, device)
    logger.info(
        "Loaded %s (%s, fingerprint %s, context %d) in %.2f s",
        loaded.name,
        loaded.source,
        loaded.fingerprint,
        loaded.context_window,
        time.perf_counter() - started,
    )
    return loaded



_GGUF_FIX = "Re-download the file, and check that transformers supports its architecture and quantization."


def _load_from_reference(
    source: str | os.PathLike,
    *,
    torch_dtype: torch.dtype | str,
    cache_root: Path,
    progress: bool,
    allow_download: bool,
    trust_remote_code: bool,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str, str, str]:
    """Load from a path or hub id; returns model, tokenizer, weight identity, display name, source kind."""
    text = os.fspath(source)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf" and not has_gguf_magic(path):
            raise ModelNotFoundError(
                f"{path} is a file, but not a .gguf file. Pass a model directory (with config.json), "
                "a .gguf file or a hub id."
            )
        gguf = path
    elif path.is_dir():
        has_config = (path / "config.json").is_file()
        ggufs = sorted(path.glob("*.gguf"))
        if has_config:
            model, tokenizer, identity = load_local_dir(
                path, torch_dtype=torch_dtype, trust_remote_code=trust_remote_code
            )
            return model, tokenizer, identity, str(path), "local"
        if len(ggufs) != 1:
            found = (
                f" and several .gguf files ({', '.join(p.name for p in ggufs)}): pass one" if ggufs else ""
            )
            raise ModelNotFoundError(
                f"{path} is not a model directory: it has no config.json{found}. Pass a directory saved "
                "with save_pretrained, a .gguf file or a hub id."
            )
        gguf = ggufs[0]
    elif isinstance(source, os.PathLike) or _looks_like_path(text):
        raise ModelNotFoundError(
            f"No such file or directory: {path}. Pass an existing model directory or .gguf file, "
            "a hub id, or omit the model to use the embedded default."
        )
    else:
        model, tokenizer, identity = load_hub(
            text, torch_dtype=torch_dtype, allow_download=allow_download, trust_remote_code=trust_remote_code
        )
        return model, tokenizer, identity, text, "hub"
    model, tokenizer, identity = load_gguf(
        gguf, torch_dtype=torch_dtype, cache_root=cache_root, progress=progress, fix=_GGUF_FIX
    )
    return model, tokenizer, identity, str(gguf), "gguf"

