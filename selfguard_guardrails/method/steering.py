"""Safety activation steering: `steer`, the context manager that applies a steering vector.

`steer` adds ``strength * v_l`` to the **output** of each chosen decoder layer ``l`` (the place
where ``v_l`` was measured; the reference code adds it to the layer's input, one layer early).
Scope ``all`` steers every position, as in the paper; scope ``generated`` steers only a row's
positions at or after its own prompt length; scope ``answer`` also steers the last prompt token,
the position whose output picks the answer's first token (and where the vector was measured).
This module checks what is asked (λ, scope, layers, a vector that fits); the runtime's hooks add it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import InvalidSettingError, VectorMismatchError
from ..runtime.layers import decoder_layers, validate_layers
from ..runtime.loading import hidden_size
from ..runtime.protocol import Steering
from ..runtime.steering_hooks import layer_additions
from ..settings import SCOPES, Scope, check_max_tokens, check_strength
from .vector import SteeringVector


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
    blocks = decoder_layers(model)
    per_row = not isinstance(strength, (int, float))
    strengths = [strength] if isinstance(strength, (int, float)) else list(strength)
    spec = steering_spec(vector, strengths=strengths, layers=layers, scope=scope, max_tokens=max_tokens,
                         num_layers=len(blocks), hidden_size=hidden_size(model),
                         allow_negative_strength=allow_negative_strength)
    scale: float | torch.Tensor = (torch.tensor(spec.strengths, dtype=torch.float32)[:, None, None] if per_row
                                   else spec.strengths[0])
    lengths = None if prompt_lengths is None else torch.as_tensor(prompt_lengths, dtype=torch.long)
    with layer_additions(model, spec.directions, scale=scale, layers=spec.layers, scope=spec.scope,
                         prompt_lengths=lengths, max_tokens=spec.max_tokens):
        yield


def steering_spec(vector: SteeringVector | Mapping[int, torch.Tensor], *, strengths: Sequence[float],
                  layers: Sequence[int], scope: Scope, max_tokens: int | None, num_layers: int, hidden_size: int,
                  allow_negative_strength: bool = False, fingerprint: str | None = None) -> Steering:
    """What a runtime adds for one batch (one λ per row), after every check a request must pass:
    λ finite (and not negative unless asked), a known scope and budget, layers the model has, and a
    vector made for this model with a direction on each chosen layer."""
    checked = tuple(check_strength(s, allow_negative=allow_negative_strength) for s in strengths)
    if scope not in SCOPES:
        raise InvalidSettingError(f"Unknown steering scope {scope!r}: use one of {', '.join(SCOPES)}.")
    check_max_tokens(max_tokens, scope)
    chosen = validate_layers(list(layers), num_layers)
    if isinstance(vector, SteeringVector):
        vector.check_fits(num_layers=num_layers, hidden_size=hidden_size, fingerprint=fingerprint)
    directions = _as_directions(vector)
    missing = [index for index in chosen if index not in directions]
    if missing:
        raise VectorMismatchError(f"The steering vector has no direction for layer {missing[0]}: "
                                  f"it covers layers {sorted(directions)}.")
    return Steering(directions=directions, layers=tuple(chosen), strengths=checked, scope=scope,
                    max_tokens=max_tokens)
