"""Choose where and how strongly to steer a model: `selfguard calibrate` and its Python API.

Names load on first use, so that building the command-line parser does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Candidate": "grid",
    "build_grid": "grid",
    "default_windows": "grid",
    "CalibrationLimits": "search",
    "CalibrationReport": "search",
    "Calibrator": "search",
    "calibrated_vector": "search",
    "write_report": "report",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'selfguard_guardrails.calibration' has no attribute {name!r}")
