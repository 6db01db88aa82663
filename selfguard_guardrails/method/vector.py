"""The steering vector: one direction per decoder layer, the checks that it fits a model, and its file.

The vector owns its file format (safetensors, metadata in the header), including the setting and
gate that `selfguard extract` or a calibration records next to it: this module is the one writer
and the one reader of those header entries.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CorruptFileError, VectorMismatchError
from ..settings import GateSetting, Mode, SteeringSetting
from .probe import AwarenessProbe

_FORMAT = "selfguard-steering-vector/1"


@dataclass
class SteeringVector:
    """One direction per decoder layer, plus what it takes to check that it fits a model."""

    directions: dict[int, torch.Tensor]
    model_fingerprint: str
    num_layers: int
    hidden_size: int
    method: str = "mean_difference"
    safety_prompt_hash: str = ""
    baseline_hash: str = ""  # what the safety prompt's shift was measured against; "" = the bare prompt
    num_prompts: int = 0
    library_version: str = ""
    model_name: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    probe: AwarenessProbe | None = None

    def __post_init__(self) -> None:
        for layer, direction in self.directions.items():
            if direction.shape != (self.hidden_size,):
                raise VectorMismatchError(
                    f"Layer {layer} of the steering vector has shape {tuple(direction.shape)}, "
                    f"expected ({self.hidden_size},): the vector file is inconsistent; extract it again."
                )

    def norms(self) -> dict[int, float]:
        """Per-layer L2 norms: a quick way to see where the safety prompt moves the model most."""
        return {layer: float(direction.norm()) for layer, direction in sorted(self.directions.items())}

    def check_fits(self, *, num_layers: int, hidden_size: int, fingerprint: str | None = None) -> None:
        """Refuse a vector made for another model, naming what differs and how to fix it."""
        problems = []
        if num_layers != self.num_layers:
            problems.append(f"{self.num_layers} layers in the vector, {num_layers} in the model")
        if hidden_size != self.hidden_size:
            problems.append(f"hidden size {self.hidden_size} in the vector, {hidden_size} in the model")
        if fingerprint is not None and self.model_fingerprint and fingerprint != self.model_fingerprint:
            problems.append(f"model fingerprint {self.model_fingerprint} in the vector, {fingerprint} loaded")
        if self.probe is not None and not 0 <= self.probe.layer < num_layers:
            problems.append(f"the awareness probe reads layer {self.probe.layer}, the model has {num_layers} layers")
        if self.probe is not None and tuple(self.probe.direction.shape) != (self.probe.features * hidden_size,):
            problems.append(f"the awareness probe's direction has shape {tuple(self.probe.direction.shape)}, "
                            f"its reading {self.probe.reading!r} of the model's hidden size {hidden_size} needs "
                            f"{self.probe.features * hidden_size}")
        if problems:
            raise VectorMismatchError(
                f"This steering vector was made for another model ({self.model_name or 'unknown'}): "
                + "; ".join(problems)
                + ". Extract a vector for this model with `selfguard extract` or SelfGuard.extract_vector()."
            )

    def save(self, path: str | Path) -> Path:
        """Write the vector as safetensors with its metadata in the header."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"layer.{layer}": d.detach().to("cpu", torch.float32).contiguous()
                   for layer, d in self.directions.items()}
        probe = {}
        if self.probe is not None:
            tensors["probe.direction"] = self.probe.direction.detach().to("cpu", torch.float32).contiguous()
            probe = {"probe_layer": str(self.probe.layer), "probe_threshold": repr(self.probe.threshold),
                     "probe_auc": repr(self.probe.auc), "probe_method": self.probe.method,
                     "probe_reading": self.probe.reading}
            if self.probe.score_range is not None:
                probe["probe_score_range"] = json.dumps(list(self.probe.score_range))
        metadata = {
            "format": _FORMAT,
            "model_fingerprint": self.model_fingerprint,
            "num_layers": str(self.num_layers),
            "hidden_size": str(self.hidden_size),
            "method": self.method,
            "safety_prompt_hash": self.safety_prompt_hash,
            "baseline_hash": self.baseline_hash,
            "num_prompts": str(self.num_prompts),
            "library_version": self.library_version,
            "model_name": self.model_name,
            "extra": json.dumps(self.extra, sort_keys=True),
            **probe,
        }
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata=metadata)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SteeringVector:
        """Read a vector written by `save`; a damaged or foreign file raises CorruptFileError."""
        path = Path(path)
        if not path.is_file():
            raise CorruptFileError(f"No steering vector at {path}: check the path, or extract one with "
                                   "`selfguard extract`.")
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            tensors = load_file(str(path))
            if metadata.get("format") != _FORMAT:
                raise ValueError(f"format is {metadata.get('format')!r}, expected {_FORMAT!r}")
            directions = {int(key.split(".", 1)[1]): value for key, value in tensors.items()
                          if key.startswith("layer.")}
            probe = None
            if "probe.direction" in tensors:
                score_range = json.loads(metadata.get("probe_score_range", "null"))
                probe = AwarenessProbe(layer=int(metadata["probe_layer"]), direction=tensors["probe.direction"],
                                       threshold=float(metadata["probe_threshold"]),
                                       auc=float(metadata["probe_auc"]),
                                       method=metadata.get("probe_method", "mean_difference"),
                                       score_range=None if score_range is None else tuple(score_range),
                                       reading=metadata.get("probe_reading", "last"))
            return cls(
                directions=directions,
                model_fingerprint=metadata["model_fingerprint"],
                num_layers=int(metadata["num_layers"]),
                hidden_size=int(metadata["hidden_size"]),
                method=metadata.get("method", ""),
                safety_prompt_hash=metadata.get("safety_prompt_hash", ""),
                baseline_hash=metadata.get("baseline_hash", ""),
                num_prompts=int(metadata.get("num_prompts", "0")),
                library_version=metadata.get("library_version", ""),
                model_name=metadata.get("model_name", ""),
                extra=json.loads(metadata.get("extra", "{}")),
                probe=probe,
            )
        except (SafetensorError, OSError, ValueError, KeyError, json.JSONDecodeError) as error:
            raise CorruptFileError(
                f"Could not read the steering vector {path}: {error}. The file is damaged or not a "
                "selfguard vector; extract it again with `selfguard extract`."
            ) from error


_SETTING_KEY = "setting"
_GATE_KEY = "gate"
_CALIBRATION_KEY = "calibration"


def with_recorded_setting(vector: SteeringVector, setting: SteeringSetting | None, *, mode: Mode | None = None,
                          gate: GateSetting | None = None, notes: Mapping[str, Any] | None = None,
                          calibration: Mapping[str, Any] | None = None) -> SteeringVector:
    """A copy of `vector` whose header records where and how strongly to steer (and, from a
    calibration, the chosen mode, the gate's λ and a summary of how they were chosen)."""
    values: dict[str, Any] = {}
    if mode is not None:
        values["mode"] = mode.value
    values |= dict(notes or {})
    if setting is not None:
        values |= {"layers": list(setting.layers), "strength": setting.strength, "scope": setting.scope,
                   "max_tokens": setting.max_tokens, "repetition_penalty": setting.repetition_penalty}
    extra = dict(vector.extra)
    if values:
        extra[_SETTING_KEY] = json.dumps(values)
    if gate is not None:
        extra[_GATE_KEY] = json.dumps({"strength": gate.strength, "below": gate.below, "soft_width": gate.soft_width})
    if calibration is not None:
        extra[_CALIBRATION_KEY] = json.dumps(calibration)
    return replace(vector, extra=extra)


def recorded_values(vector: SteeringVector) -> dict[str, Any] | None:
    """The setting recorded in the vector's header as written (mode, layers, λ, ...), if any."""
    recorded = vector.extra.get(_SETTING_KEY)
    return json.loads(recorded) if recorded else None


def recorded_mode(vector: SteeringVector) -> Mode | None:
    """The mode calibration chose (prompt, steer, self-guard or guarded), if the vector file records one."""
    values = recorded_values(vector)
    return Mode.parse(values["mode"]) if values and values.get("mode") else None


def recorded_setting(vector: SteeringVector) -> SteeringSetting | None:
    """The steering setting recorded in the vector's header, if it records layers."""
    values = recorded_values(vector)
    if not values or not values.get("layers"):
        return None
    return SteeringSetting(layers=tuple(values["layers"]), strength=values["strength"],
                           scope=values.get("scope", "all"), source="vector file",
                           max_tokens=values.get("max_tokens"),
                           repetition_penalty=values.get("repetition_penalty", 1.0))


def recorded_gate(vector: SteeringVector) -> GateSetting | None:
    """The gate setting calibration recorded in the vector's header, if any."""
    recorded = vector.extra.get(_GATE_KEY)
    return GateSetting(**json.loads(recorded), source="vector file") if recorded else None
