"""Last-prompt-token hidden states at each decoder layer's output, read through forward hooks.

The hooks sit on the same modules that steering hooks, so "layer l" means one place in both.
Prompts run in left-padded batches, so the last prompt token of every row sits at position -1.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .layers import decoder_layers


class _EnoughLayers(Exception):
    """Raised by the last hook that is needed, so a probe read skips the layers above it."""


@contextmanager
def _record_last_token(layers: nn.ModuleList, up_to: int | None = None,
                       weights: list[torch.Tensor] | None = None) -> Iterator[list[torch.Tensor | None]]:
    """Capture each layer's output at the last position (up to layer `up_to`), for one block.
    With `weights` (its one item set per batch to [rows, positions] weights summing to 1 per row),
    the weighted mean over positions is captured after the last state."""
    count = len(layers) if up_to is None else up_to + 1
    captured: list[torch.Tensor | None] = [None] * count

    def make_hook(index: int):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            hidden = output[0] if isinstance(output, tuple) else output
            last = hidden[:, -1, :].detach().to(torch.float32)
            if weights:
                mean = torch.einsum("rp,rph->rh", weights[0], hidden.detach().to(torch.float32))
                last = torch.cat([last, mean], dim=-1)
            captured[index] = last
            if up_to is not None and index == up_to:
                raise _EnoughLayers

        return hook

    handles = [layer.register_forward_hook(make_hook(i)) for i, layer in enumerate(layers[:count])]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def mean_weights(mask: torch.Tensor, after: int) -> torch.Tensor:
    """[rows, positions] weights averaging each left-padded row over its tokens after its first
    `after` (all its tokens if it has no more than that)."""
    own = mask.cumsum(-1)
    counted = (own > after) & mask.bool()
    counted = torch.where(counted.any(-1, keepdim=True), counted, mask.bool())
    return counted.float() / counted.sum(-1, keepdim=True)


@torch.inference_mode()
def last_token_activations(
    model: nn.Module, tokenizer: Any, prompts: Sequence[str], *, batch_size: int = 16, desc: str = "activations",
    progress: bool = True, up_to_layer: int | None = None, mean_after: int | None = None,
) -> torch.Tensor:
    """Hidden state of the last prompt token at every layer output: [num_prompts, layers, hidden].

    With `up_to_layer`, only layers 0..up_to_layer are read and the forward pass stops there:
    the awareness gate needs one layer, and the layers above it would be wasted work. With
    `mean_after`, each layer's mean over the prompt's tokens after its first `mean_after` (the
    chat template's fixed opening) follows the last state: [num_prompts, layers, 2 * hidden], from
    the same forward pass."""
    layers = decoder_layers(model)
    device = next(model.parameters()).device
    body = getattr(model, "base_model", model)  # skip the LM head: only layer outputs are needed
    rows = []
    weights: list[torch.Tensor] = []
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # the last prompt token must sit at position -1 in every row
    try:
        with _record_last_token(layers, up_to_layer, weights if mean_after is not None else None) as captured:
            for start in tqdm(range(0, len(prompts), batch_size), desc=desc, disable=not progress, unit="batch"):
                batch = tokenizer(list(prompts[start:start + batch_size]), return_tensors="pt", padding=True,
                                  add_special_tokens=False)
                mask = batch["attention_mask"].to(device)
                if mean_after is not None:
                    weights[:] = [mean_weights(mask, mean_after)]
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                with suppress(_EnoughLayers):
                    body(input_ids=batch["input_ids"].to(device), attention_mask=mask, position_ids=positions,
                         use_cache=False)
                rows.append(torch.stack(captured, dim=1).cpu())  # type: ignore[arg-type]
    finally:
        tokenizer.padding_side = padding_side
    return torch.cat(rows, dim=0)
