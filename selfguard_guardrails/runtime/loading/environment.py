"""Torch settings a load applies: thread count, dtype and device, checked before anything loads."""

from __future__ import annotations

import os
from typing import Any, Literal, TypeVar

import torch

from ...errors import InvalidSettingError

__all__ = ["SMALL_MODEL_PARAMETERS", "auto_threads", "resolve_device", "resolve_dtype", "set_torch_threads"]

SMALL_MODEL_PARAMETERS = 1_000_000_000

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


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype | str:
    """The torch dtype a name stands for ("auto" kept as is), so a typo fails before a slow load."""
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


def resolve_device(device: _Device) -> _Device:
    """``device`` unchanged once torch accepts it, so a typo fails before a slow load."""
    try:
        torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidSettingError(
            f"device {device!r} is not a valid torch device ('cpu', 'cuda:0', ...)."
        ) from exc
    return device
