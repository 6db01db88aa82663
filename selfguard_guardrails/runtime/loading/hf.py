"""Hugging Face checkpoints: a local model directory, or a hub id from the cache (or the network)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from ...errors import CorruptFileError, ModelNotFoundError
from .identity import directory_identity, object_identity

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["load_hub", "load_local_dir"]

logger = logging.getLogger(__name__)


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


def load_local_dir(
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
    return model, tokenizer, directory_identity(path)


def _hub_snapshot_dir(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:
        return None
    return Path(found).parent if isinstance(found, str) else None


def load_hub(
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
        identity = directory_identity(snapshot)
    else:
        commit = getattr(model.config, "_commit_hash", None)
        identity = f"hub:{repo_id}@{commit}:" + object_identity(model)
    return model, tokenizer, identity

