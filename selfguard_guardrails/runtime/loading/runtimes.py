"""Loading a model for the runtime the user names: one place for the engine and the CLI."""

from __future__ import annotations

import os
from typing import Any

from ...errors import InvalidSettingError
from .llama_cpp import llama_cpp_threads, load_for_llama_cpp
from .load import LoadedModel, load_model

RUNTIMES = ("transformers", "llama.cpp")


def load_on_runtime(source: Any = None, *, runtime: str = "transformers", dtype: Any = "float32", device: str = "cpu",
                    threads: int | str | None = "auto", cache_dir: str | os.PathLike | None = None,
                    allow_download: bool = False, trust_remote_code: bool = False,
                    progress: bool = True) -> LoadedModel:
    """`load_model` for "transformers"; the GGUF as it is for "llama.cpp", where the options that
    only PyTorch applies are refused rather than ignored."""
    if runtime == "transformers":
        return load_model(source, dtype=dtype, device=device, threads=threads,  # type: ignore[arg-type]
                          cache_dir=cache_dir, allow_download=allow_download, trust_remote_code=trust_remote_code,
                          progress=progress)
    if runtime != "llama.cpp":
        raise InvalidSettingError(f"runtime must be one of {', '.join(map(repr, RUNTIMES))}, got {runtime!r}.")
    changed = [name for name, value, default in (("dtype", dtype, "float32"), ("device", device, "cpu"),
                                                 ("allow_download", allow_download, False),
                                                 ("trust_remote_code", trust_remote_code, False)) if value != default]
    if changed:
        verb = "does" if len(changed) == 1 else "do"
        raise InvalidSettingError(f"{', '.join(changed)} {verb} not apply to runtime='llama.cpp', which runs the "
                                  "GGUF's own weights on the CPU: drop it, or use runtime='transformers'.")
    return load_for_llama_cpp(source, threads=llama_cpp_threads(threads), cache_dir=cache_dir, progress=progress)
