"""Forward hooks that add a fixed vector to chosen decoder layers of a torch model.

The mechanics only (which positions, which layers, tensor or tuple outputs); what to add and how
strongly is the method's choice. Positions are judged absolutely, from the root model's call, so
the token scopes stay correct under the KV cache (a decode step sees a sequence of length 1) and
with left padding.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..errors import InvalidSettingError
from ..settings import TOKEN_SCOPES, Scope
from .layers import decoder_layers


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


@contextmanager
def layer_additions(model: nn.Module, directions: Mapping[int, torch.Tensor], *, scale: float | torch.Tensor,
                    layers: Sequence[int], scope: Scope = "all", prompt_lengths: torch.Tensor | None = None,
                    max_tokens: int | None = None) -> Iterator[None]:
    """Add ``scale * directions[l]`` at the output of each layer ``l`` in `layers` inside the block
    (`scale` a number, or a [batch, 1, 1] tensor of per-row λ). Hooks are always removed on exit."""
    blocks = decoder_layers(model)
    tracker = None
    if scope in TOKEN_SCOPES:
        tracker = _PositionTracker(prompt_lengths, max_tokens, from_last_prompt_token=scope == "answer")
    handles = []
    try:
        if tracker is not None:
            handles.append(model.register_forward_pre_hook(tracker, with_kwargs=True))
        for index in layers:
            parameter = next(blocks[index].parameters())
            delta = (scale * directions[index].to(torch.float32)).to(parameter.device, parameter.dtype)
            handles.append(blocks[index].register_forward_hook(_AddToOutput(delta, tracker)))
        yield
    finally:
        for handle in handles:
            handle.remove()
