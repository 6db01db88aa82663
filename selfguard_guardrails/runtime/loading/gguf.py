"""GGUF files: the magic-byte check, the content hash and the cache of dequantized models.

A GGUF is dequantized with transformers once (~16 s for the embedded model) and the
result cached as safetensors plus tokenizer files under
``<cache_dir>/gguf/<first 16 hex of the GGUF's sha256>/``; later loads read the cache.
The cache is written into a temporary directory next to the target and renamed into
place, so a crash never leaves a half-written entry that looks complete.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from ...errors import CorruptFileError, InvalidSettingError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["check_gguf_magic", "has_gguf_magic", "load_gguf"]

logger = logging.getLogger(__name__)

_CACHE_FORMAT = 1
_MARKER = "complete.json"
_HASH_INDEX = "hashes.json"
_TMP_PREFIX = ".tmp-"
_STALE_TMP_AGE_S = 6 * 3600
_GGUF_MAGIC = b"GGUF"

_hash_memo: dict[tuple[str, int, int], str] = {}
_build_lock = threading.Lock()


def check_gguf_magic(path: Path, fix: str) -> None:
    """Raise CorruptFileError, naming ``fix``, unless ``path`` starts with the GGUF magic bytes."""
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


def has_gguf_magic(path: Path) -> bool:
    """Whether ``path`` reads as a GGUF, for telling one apart from other files by content, not name."""
    try:
        check_gguf_magic(path, "")
    except CorruptFileError:
        return False
    return True


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


def gguf_identity(path: Path, cache_root: Path, progress: bool) -> str:
    """The weight identity of a GGUF file ("gguf:<sha256>"), the same whichever runtime loads it."""
    return f"gguf:{_gguf_sha256(path.resolve(), cache_root / 'gguf', progress)}"


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


def free_memory_bytes() -> int | None:
    """Memory the system can still hand out; None where it cannot tell.

    Linux's MemAvailable counts reclaimable page cache; the free-page count alone would call a
    machine that recently read large files "full"."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _parameter_count(path: Path) -> int | None:
    """Parameters in a GGUF's tensors; None when its header does not parse (the conversion then
    reports the file as corrupt, with the reason)."""
    import gguf

    try:
        return sum(int(np.prod(tensor.shape)) for tensor in gguf.GGUFReader(str(path)).tensors)
    except Exception:
        return None


def check_dequantized_fits(path: Path) -> None:
    """Refuse, before any work, to dequantize a GGUF whose float32 weights would not fit: the
    conversion holds two copies (transformers' GGUF model and our plain copy)."""
    parameters = _parameter_count(path)
    free = free_memory_bytes()
    if parameters is None or free is None:
        return
    needed = 2 * 4 * parameters
    if needed > free:
        gib = 1024 ** 3
        raise InvalidSettingError(
            f"Dequantizing {path.name} ({parameters / 1e9:.1f}B parameters) for the transformers runtime needs about "
            f"{needed / gib:.1f} GiB (two float32 copies while converting); {free / gib:.1f} GiB is free. Run it "
            f"as it is with runtime='llama.cpp' ({path.stat().st_size / gib:.1f} GiB file), or free memory.")


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


def load_gguf(
    path: Path, *, torch_dtype: torch.dtype | str, cache_root: Path, progress: bool, fix: str
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    """Load a GGUF through the dequantized cache, building the cache on first use."""
    path = path.resolve()
    check_gguf_magic(path, fix)
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

        check_dequantized_fits(path)
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

