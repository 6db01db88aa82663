"""Build a safety steering vector from prompts: v_l = mean_x [h_l(safety + x) - h_l(x)].

Activations are read at the output of each decoder layer through forward hooks on the same
modules that `steer` hooks, so "layer l" means one place in both. Prompts are run in
left-padded batches, so the last prompt token of every row sits at position -1.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from .. import __version__
from ..errors import InvalidMessagesError, InvalidSettingError
from ..runtime.layers import decoder_layers
from .prompting import NEUTRAL_BASELINE, ChatRenderer, SafetyPrompt, apply_safety_prompt, normalize_messages
from .steering import SteeringVector

Method = Literal["mean_difference", "pca"]


class _EnoughLayers(Exception):
    """Raised by the last hook that is needed, so a probe read skips the layers above it."""


@contextmanager
def _record_last_token(layers: nn.ModuleList, up_to: int | None = None) -> Iterator[list[torch.Tensor | None]]:
    """Capture each layer's output at the last position (up to layer `up_to`), for one block."""
    count = len(layers) if up_to is None else up_to + 1
    captured: list[torch.Tensor | None] = [None] * count

    def make_hook(index: int):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            hidden = output[0] if isinstance(output, tuple) else output
            captured[index] = hidden[:, -1, :].detach().to(torch.float32)
            if up_to is not None and index == up_to:
                raise _EnoughLayers

        return hook

    handles = [layer.register_forward_hook(make_hook(i)) for i, layer in enumerate(layers[:count])]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@torch.inference_mode()
def last_token_activations(
    model: nn.Module, tokenizer: Any, prompts: Sequence[str], *, batch_size: int = 16, desc: str = "activations",
    progress: bool = True, up_to_layer: int | None = None,
) -> torch.Tensor:
    """Hidden state of the last prompt token at every layer output: [num_prompts, layers, hidden].

    With `up_to_layer`, only layers 0..up_to_layer are read and the forward pass stops there:
    the awareness gate needs one layer, and the layers above it would be wasted work."""
    layers = decoder_layers(model)
    device = next(model.parameters()).device
    body = getattr(model, "base_model", model)  # skip the LM head: only layer outputs are needed
    rows = []
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # the last prompt token must sit at position -1 in every row
    try:
        with _record_last_token(layers, up_to_layer) as captured:
            for start in tqdm(range(0, len(prompts), batch_size), desc=desc, disable=not progress, unit="batch"):
                batch = tokenizer(list(prompts[start:start + batch_size]), return_tensors="pt", padding=True,
                                  add_special_tokens=False)
                mask = batch["attention_mask"].to(device)
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                with suppress(_EnoughLayers):
                    body(input_ids=batch["input_ids"].to(device), attention_mask=mask, position_ids=positions,
                         use_cache=False)
                rows.append(torch.stack(captured, dim=1).cpu())  # type: ignore[arg-type]
    finally:
        tokenizer.padding_side = padding_side
    return torch.cat(rows, dim=0)


def _first_principal_direction(differences: torch.Tensor) -> torch.Tensor:
    """First principal axis of the per-prompt differences, signed and scaled like the mean."""
    mean = differences.mean(dim=0)
    _, _, right = torch.linalg.svd(differences, full_matrices=False)
    axis = right[0]
    projection = differences @ axis
    if projection.mean() < 0:
        axis, projection = -axis, -projection
    return axis * projection.mean() if mean.norm() > 0 else axis


def extract_steering_vector(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    safety: SafetyPrompt | None = None,
    baseline: SafetyPrompt | None = NEUTRAL_BASELINE,
    method: Method = "mean_difference",
    batch_size: int = 16,
    model_fingerprint: str = "",
    model_name: str = "",
    progress: bool = True,
) -> SteeringVector:
    """Measure how the safety prompt shifts each layer's last-prompt-token state, averaged over
    prompts, against `baseline`: the same slots with neutral text (default), or None for the
    bare prompt as in the paper."""
    if method not in ("mean_difference", "pca"):
        raise InvalidSettingError(f"Unknown extraction method {method!r}: use 'mean_difference' or 'pca'.")
    prompts = [p for p in prompts if isinstance(p, str) and p.strip()]
    if len(prompts) < 2:
        raise InvalidMessagesError("Extraction needs at least two non-empty prompts; give a prompt file with more.")
    if batch_size < 1:
        raise InvalidSettingError(f"batch_size must be at least 1, got {batch_size}.")
    safety = safety or SafetyPrompt()
    renderer = ChatRenderer(tokenizer)
    baseline_texts, safety_texts = [], []
    for prompt in prompts:
        messages = normalize_messages(prompt)
        baseline_texts.append(renderer.render(apply_safety_prompt(messages, baseline)))
        safety_texts.append(renderer.render(apply_safety_prompt(messages, safety)))
    with_safety = last_token_activations(model, tokenizer, safety_texts, batch_size=batch_size,
                                         desc="with safety prompt", progress=progress)
    without = last_token_activations(model, tokenizer, baseline_texts, batch_size=batch_size,
                                     desc="with the baseline" if baseline else "without safety prompt",
                                     progress=progress)
    differences = with_safety - without  # [prompts, layers, hidden]
    if method == "pca":
        directions = {i: _first_principal_direction(differences[:, i, :]) for i in range(differences.shape[1])}
    else:
        directions = {i: differences[:, i, :].mean(dim=0) for i in range(differences.shape[1])}
    return SteeringVector(
        directions=directions,
        model_fingerprint=model_fingerprint,
        num_layers=differences.shape[1],
        hidden_size=differences.shape[2],
        method=method,
        safety_prompt_hash=safety.fingerprint(),
        baseline_hash=baseline.fingerprint() if baseline else "",
        num_prompts=len(prompts),
        library_version=__version__,
        model_name=model_name,
    )
