"""Latent safety awareness: a linear probe on the last prompt token that says "this is harmful".

Models often represent that a request is harmful and comply anyway (the awareness–compliance
gap Self-Guard targets). The probe reads that representation; the engine uses it as a gate,
so the safety prompt and the steering vector act on requests the model itself finds risky and
leave ordinary requests alone (a small model cannot make that distinction from a prompt).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .errors import InvalidMessagesError
from .extraction import last_token_activations
from .probe import AwarenessProbe, auc
from .prompting import ChatRenderer, apply_safety_prompt, normalize_messages


def _best_threshold(positive: torch.Tensor, negative: torch.Tensor, max_false_positive: float) -> float:
    """The cut with the highest true-positive rate whose false-positive rate stays within bounds."""
    candidates = torch.cat([positive, negative]).sort().values
    best, best_tpr = float(candidates[-1]) + 1.0, -1.0
    for cut in candidates.tolist():
        fpr = float((negative >= cut).float().mean())
        tpr = float((positive >= cut).float().mean())
        if fpr <= max_false_positive and tpr > best_tpr:
            best, best_tpr = cut, tpr
    return best


def plain_renders(tokenizer: Any, prompts: Sequence[str]) -> list[str]:
    """Prompts rendered as the user sent them (no safety text): what the probe reads."""
    renderer = ChatRenderer(tokenizer)
    return [renderer.render(apply_safety_prompt(normalize_messages(p), None)) for p in prompts]


def fit_awareness_probe(
    model: nn.Module,
    tokenizer: Any,
    harmful: Sequence[str],
    benign: Sequence[str],
    *,
    holdout: float = 0.3,
    max_false_positive: float = 0.05,
    batch_size: int = 16,
    progress: bool = True,
) -> AwarenessProbe:
    """Fit the probe on labelled prompts: pick the layer whose mean-difference direction
    separates held-out prompts best, then the threshold that keeps benign flags rare."""
    if len(harmful) < 4 or len(benign) < 4:
        raise InvalidMessagesError("The awareness probe needs at least 4 harmful and 4 benign prompts.")
    states = last_token_activations(model, tokenizer, plain_renders(tokenizer, [*harmful, *benign]),
                                    batch_size=batch_size, desc="awareness probe", progress=progress)
    labels = torch.tensor([1] * len(harmful) + [0] * len(benign))
    held = torch.arange(len(labels)) % 10 < round(holdout * 10)  # a fixed, interleaved held-out split
    train_h, train_b = states[(labels == 1) & ~held], states[(labels == 0) & ~held]
    test_h, test_b = states[(labels == 1) & held], states[(labels == 0) & held]
    best: tuple[float, int, torch.Tensor] | None = None
    for layer in range(states.shape[1]):
        direction = train_h[:, layer].mean(0) - train_b[:, layer].mean(0)
        direction = direction / direction.norm().clamp_min(1e-8)
        score = auc(test_h[:, layer] @ direction, test_b[:, layer] @ direction)
        if best is None or score > best[0]:
            best = (score, layer, direction)
    assert best is not None
    score, layer, direction = best
    # Final direction and threshold use every labelled prompt at the chosen layer.
    direction = states[labels == 1, layer].mean(0) - states[labels == 0, layer].mean(0)
    direction = direction / direction.norm().clamp_min(1e-8)
    positive, negative = states[labels == 1, layer] @ direction, states[labels == 0, layer] @ direction
    threshold = _best_threshold(positive, negative, max_false_positive)
    return AwarenessProbe(layer=layer, direction=direction, threshold=threshold, auc=score)
