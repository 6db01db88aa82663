"""Build a safety steering vector from prompts: v_l = mean_x [h_l(safety + x) - h_l(x)].

Activations are read by the runtime at the output of each decoder layer, the place where
steering adds the vector, so "layer l" means one place in both (`runtime/activations.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from .. import __version__
from ..errors import InvalidMessagesError, InvalidSettingError
from ..runtime.chat import ChatRenderer, normalize_messages
from ..runtime.protocol import ModelRuntime
from ..runtime.transformers_runtime import TransformersRuntime
from ..settings import EXTRACTION_METHODS
from .prompting import NEUTRAL_BASELINE, SafetyPrompt, apply_safety_prompt
from .vector import SteeringVector

Method = Literal["mean_difference", "pca"]


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
    bare prompt as in the paper. For any Hugging Face causal LM and its tokenizer."""
    runtime = TransformersRuntime(model, tokenizer, name=model_name, fingerprint=model_fingerprint)
    return measure_steering_vector(runtime, prompts, safety=safety, baseline=baseline, method=method,
                                   batch_size=batch_size, progress=progress)


def measure_steering_vector(
    runtime: ModelRuntime,
    prompts: Sequence[str],
    *,
    safety: SafetyPrompt | None = None,
    baseline: SafetyPrompt | None = NEUTRAL_BASELINE,
    method: Method = "mean_difference",
    batch_size: int = 16,
    progress: bool = True,
) -> SteeringVector:
    """`extract_steering_vector` on any model runtime: the states come from `runtime.last_token_states`."""
    if method not in EXTRACTION_METHODS:
        raise InvalidSettingError(f"Unknown extraction method {method!r}: use 'mean_difference' or 'pca'.")
    prompts = [p for p in prompts if isinstance(p, str) and p.strip()]
    if len(prompts) < 2:
        raise InvalidMessagesError("Extraction needs at least two non-empty prompts; give a prompt file with more.")
    if batch_size < 1:
        raise InvalidSettingError(f"batch_size must be at least 1, got {batch_size}.")
    safety = safety or SafetyPrompt()
    renderer = ChatRenderer(runtime.tokenizer)
    baseline_texts, safety_texts = [], []
    for prompt in prompts:
        messages = normalize_messages(prompt)
        baseline_texts.append(renderer.render(apply_safety_prompt(messages, baseline)))
        safety_texts.append(renderer.render(apply_safety_prompt(messages, safety)))
    with_safety = runtime.last_token_states(safety_texts, batch_size=batch_size, desc="with safety prompt",
                                            progress=progress)
    without = runtime.last_token_states(baseline_texts, batch_size=batch_size,
                                        desc="with the baseline" if baseline else "without safety prompt",
                                        progress=progress)
    differences = with_safety - without  # [prompts, layers, hidden]
    if method == "pca":
        directions = {i: _first_principal_direction(differences[:, i, :]) for i in range(differences.shape[1])}
    else:
        directions = {i: differences[:, i, :].mean(dim=0) for i in range(differences.shape[1])}
    return SteeringVector(
        directions=directions,
        model_fingerprint=runtime.fingerprint,
        num_layers=differences.shape[1],
        hidden_size=differences.shape[2],
        method=method,
        safety_prompt_hash=safety.fingerprint(),
        baseline_hash=baseline.fingerprint() if baseline else "",
        num_prompts=len(prompts),
        library_version=__version__,
        model_name=runtime.name,
    )
