"""Safety activation steering: the steering vector and the context manager that applies it.

`steer` adds ``strength * v_l`` to the **output** of each chosen decoder layer ``l`` (the place
where ``v_l`` was measured; the reference code adds it to the layer's input, one layer early).
Scope ``all`` steers every position, as in the paper; scope ``generated`` steers only a row's
positions at or after its own prompt length; scope ``answer`` also steers the last prompt token,
the position whose output picks the answer's first token (and where the vector was measured).
Positions are judged absolutely, so the token scopes stay correct
under the KV cache (a decode step sees a sequence of length 1) and with left padding.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import CorruptFileError, InvalidSettingError, VectorMismatchError
from ..runtime.layers import decoder_layers, validate_layers
from .probe import AwarenessProbe

Scope = Literal["all", "generated", "answer"]
SCOPES: tuple[str, ...] = ("all", "generated", "answer")
TOKEN_SCOPES: tuple[str, ...] = ("generated", "answer")  # scopes that count positions from the prompt's end
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
        if self.probe is not None and tuple(self.probe.direction.shape) != (hidden_size,):
            problems.append(f"the awareness probe's direction has shape {tuple(self.probe.direction.shape)}, "
                            f"the model's hidden size is {hidden_size}")
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
                     "probe_auc": repr(self.probe.auc), "probe_method": self.probe.method}
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
                                       score_range=None if score_range is None else tuple(score_range))
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


# The strongest λ at which the embedded SmolLM2-135M stayed readable in calibration: 1.0 gave no
# degenerate answer on the calibration split, 1.5 garbled them (docs/report.md).
READABLE_STRENGTH = 1.0


def check_strength(strength: float, *, allow_negative: bool = False) -> float:
    """λ must be a finite number (NaN or infinity would destroy every hidden state), and not
    negative unless asked for by name: a negative λ steers *away* from safety, so the model
    complies with harmful requests, which a safety library must never do by a slip of the sign."""
    try:
        value = float(strength)
    except (TypeError, ValueError) as error:
        raise InvalidSettingError(f"Steering strength must be a number, got {strength!r}.") from error
    if not math.isfinite(value):
        raise InvalidSettingError(f"Steering strength must be finite, got {value}: use e.g. 0.6.")
    if value < 0 and not allow_negative:
        raise InvalidSettingError(
            f"Steering strength {value:g} is negative: it steers away from safety and makes the model comply with "
            "harmful requests. Use λ >= 0; for research on that effect, opt in with allow_negative_strength=True "
            "(--allow-negative-strength on the command line).")
    return value


def warn_if_unreadable(strength: float) -> None:
    """Warn about a λ past the point where calibration saw the embedded model's text break."""
    if abs(strength) > READABLE_STRENGTH:
        warnings.warn(f"Steering strength {strength:g} is above {READABLE_STRENGTH:g}, the strongest at which the "
                      "embedded model's answers stayed readable in calibration (at 1.5 they were garbled). Check "
                      "the degenerate rate with `selfguard eval` before relying on it.", UserWarning, stacklevel=4)


def check_max_tokens(max_tokens: int | None, scope: str) -> None:
    """A steered-token budget counts answer tokens, so it needs scope `generated` or `answer` and at least 1."""
    if max_tokens is None:
        return
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidSettingError(f"max_tokens (how many generated tokens to steer) must be a whole number >= 1 "
                                  f"or None for all, got {max_tokens!r}.")
    if scope not in TOKEN_SCOPES:
        raise InvalidSettingError("max_tokens counts generated tokens: use it with scope 'generated' or 'answer'.")


class _PositionTracker:
    """Works out, once per forward pass, which positions of each row are generated tokens.

    It reads absolute positions from the root model's call (``position_ids``, else the
    attention mask, else the cache length), so decode steps of length 1 are judged correctly.
    """

    def __init__(self, prompt_lengths: torch.Tensor | None, max_tokens: int | None = None,
                 from_last_prompt_token: bool = False) -> None:
        self.prompt_lengths = prompt_lengths
        self.max_tokens = max_tokens
        self.shift = 1 if from_last_prompt_token else 0
        self.infer_lengths = prompt_lengths is None
        self.mask: torch.Tensor | None = None  # [batch, seq, 1], 1.0 where steering applies

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        inputs = kwargs.get("input_ids", args[0] if args else None)
        if inputs is None:
            inputs = kwargs.get("inputs_embeds")
        if inputs is None:
            raise InvalidSettingError("Scopes 'generated' and 'answer' need input_ids or inputs_embeds in the "
                                      "model call.")
        batch, seq_len = inputs.shape[0], inputs.shape[1]
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        past = int(cache.get_seq_length()) if cache is not None and hasattr(cache, "get_seq_length") else 0
        positions = kwargs.get("position_ids")
        attention_mask = kwargs.get("attention_mask")
        if positions is None and attention_mask is not None and attention_mask.dim() == 2:
            positions = (attention_mask.long().cumsum(-1) - 1)[:, -seq_len:]
        if positions is None:
            positions = torch.arange(past, past + seq_len, device=inputs.device).unsqueeze(0)
        positions = positions.expand(batch, seq_len)
        if self.infer_lengths and (past == 0 or self.prompt_lengths is None):
            self.prompt_lengths = positions.max(dim=-1).values + 1
        assert self.prompt_lengths is not None  # given at construction, else inferred just above
        lengths = self.prompt_lengths.to(positions.device)[:, None] - self.shift
        generated = positions >= lengths
        if self.max_tokens is not None:
            generated &= positions < lengths + self.max_tokens
        self.mask = generated.unsqueeze(-1)


class _AddToOutput:
    """Forward hook adding a fixed delta to a layer's hidden-state output (tensor or tuple)."""

    def __init__(self, delta: torch.Tensor, tracker: _PositionTracker | None) -> None:
        self.delta = delta
        self.tracker = tracker

    def __call__(self, module: nn.Module, args: tuple, output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output
        if self.tracker is None:
            steered = hidden + self.delta
        else:
            mask = self.tracker.mask
            steered = hidden + self.delta * mask.to(hidden.dtype) if mask is not None else hidden
        return (steered, *output[1:]) if isinstance(output, tuple) else steered


def _as_directions(vector: SteeringVector | Mapping[int, torch.Tensor]) -> Mapping[int, torch.Tensor]:
    return vector.directions if isinstance(vector, SteeringVector) else vector


@contextmanager
def steer(
    model: nn.Module,
    vector: SteeringVector | Mapping[int, torch.Tensor],
    *,
    strength: float | Sequence[float],
    layers: Sequence[int],
    scope: Scope = "all",
    prompt_lengths: Sequence[int] | torch.Tensor | None = None,
    max_tokens: int | None = None,
    allow_negative_strength: bool = False,
) -> Iterator[None]:
    """Add ``strength * vector[l]`` at the output of each layer ``l`` in ``layers`` inside the block.

    Works on any Hugging Face causal LM whose decoder layers can be found. With scope
    ``generated`` or ``answer``, pass ``prompt_lengths`` (real prompt tokens per row) or let each prefill pass
    set them; ``max_tokens`` then steers only the first that many generated tokens of each row
    (the opening, where the model decides to refuse). A sequence of strengths gives each batch
    row its own λ (the soft awareness gate). A negative λ (steering away from safety) is refused
    unless `allow_negative_strength=True`. Hooks are always removed on exit, also on error.
    Not for concurrent use on one model: hooks are model-global (the engine serialises calls).
    """
    per_row = not isinstance(strength, (int, float))
    scale: float | torch.Tensor = (
        torch.tensor([check_strength(s, allow_negative=allow_negative_strength) for s in strength],  # type: ignore[union-attr]
                     dtype=torch.float32)[:, None, None]
        if per_row else check_strength(strength, allow_negative=allow_negative_strength))  # type: ignore[arg-type]
    if scope not in SCOPES:
        raise InvalidSettingError(f"Unknown steering scope {scope!r}: use one of {', '.join(SCOPES)}.")
    check_max_tokens(max_tokens, scope)
    blocks = decoder_layers(model)
    chosen = validate_layers(list(layers), len(blocks))
    directions = _as_directions(vector)
    hidden_size = int(getattr(model.config, "hidden_size", 0) or getattr(model.config, "n_embd", 0))
    if isinstance(vector, SteeringVector):
        vector.check_fits(num_layers=len(blocks), hidden_size=hidden_size or vector.hidden_size)
    missing = [index for index in chosen if index not in directions]
    if missing:
        raise VectorMismatchError(f"The steering vector has no direction for layer {missing[0]}: "
                                  f"it covers layers {sorted(directions)}.")

    tracker = None
    if scope in TOKEN_SCOPES:
        lengths = None if prompt_lengths is None else torch.as_tensor(prompt_lengths, dtype=torch.long)
        tracker = _PositionTracker(lengths, max_tokens, from_last_prompt_token=scope == "answer")
    handles = []
    try:
        if tracker is not None:
            handles.append(model.register_forward_pre_hook(tracker, with_kwargs=True))
        for index in chosen:
            parameter = next(blocks[index].parameters())
            delta = (scale * directions[index].to(torch.float32)).to(parameter.device, parameter.dtype)
            handles.append(blocks[index].register_forward_hook(_AddToOutput(delta, tracker)))
        yield
    finally:
        for handle in handles:
            handle.remove()
