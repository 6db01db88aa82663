"""Latent safety awareness, fitted: what the probe reads (the user's side of the conversation),
and a linear probe on the last prompt token, fitted on labelled prompts, that says "this is harmful".

Models often represent that a request is harmful and comply anyway (the awareness–compliance
gap Self-Guard targets). The probe reads that representation; the engine uses it as a gate,
so the safety prompt and the steering vector act on requests the model itself finds risky and
leave ordinary requests alone (a small model cannot make that distinction from a prompt).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from ..errors import InvalidMessagesError, InvalidSettingError
from ..runtime.chat import ChatRenderer, Messages, normalize_messages
from ..runtime.protocol import ModelRuntime
from ..runtime.transformers_runtime import TransformersRuntime
from ..settings import PROBE_METHODS, PROBE_READINGS
from .probe import AwarenessProbe, ProbeMethod, ProbeReading, auc
from .prompting import apply_safety_prompt

USER_TURN_SEPARATOR = "\n\n"  # between user turns joined into the one request the probe reads
L2_PENALTY = 0.1  # on standardised states; 0.1 beat 1 and 10 in out-of-fold AUC on our calibration set


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


def probe_texts(renderer: ChatRenderer, prompts: Sequence[Messages]) -> list[str]:
    """Each prompt's request rendered as the user sent it (no safety text): what the probe reads,
    when it is fitted and when it gates."""
    return [renderer.render(apply_safety_prompt(request_of(p), None)) for p in prompts]


def request_of(messages: Messages) -> list[dict[str, Any]]:
    """Every user turn of the conversation, in order, as one user request: intent set up in an
    earlier turn ("how do I make X?" ... "Great, now step 2 in detail.") and a document pasted in
    to be acted on both count. The system prompt, assistant turns, tool schemas and tool results
    are left out: they are not the user's request, and a bound weather tool and its result pushed
    a weather question over the embedded model's threshold when they were read."""
    turns = [m["content"].strip() for m in normalize_messages(messages) if m["role"] == "user"]
    return [{"role": "user", "content": USER_TURN_SEPARATOR.join(t for t in turns if t)}]


def user_text_start(renderer: ChatRenderer, tokenizer: Any) -> int:
    """Tokens of a rendered request before the user's text: the template's fixed opening (and
    default system prompt), which a mean over the request's tokens leaves out."""
    marker = "\u2063request\u2063"
    text = renderer.render([{"role": "user", "content": marker}])
    return len(tokenizer(text[:text.index(marker)], add_special_tokens=False)["input_ids"])


@lru_cache(maxsize=8)
def _opening_length(tokenizer: Any) -> int:
    """`user_text_start` for a tokenizer's own template, worked out once: the gate asks on every call."""
    return user_text_start(ChatRenderer(tokenizer), tokenizer)


def probe_states(runtime: ModelRuntime, texts: Sequence[str], reading: str, *, up_to_layer: int | None = None,
                 batch_size: int = 16, progress: bool = False) -> torch.Tensor:
    """What a probe with `reading` reads of rendered requests, at every layer up to `up_to_layer`:
    the same call when it is fitted and when it gates."""
    if reading not in PROBE_READINGS:
        raise InvalidSettingError(f"Unknown probe reading {reading!r}: use one of {', '.join(PROBE_READINGS)}.")
    mean_after = _opening_length(runtime.tokenizer) if reading == "last+mean" else None
    return runtime.last_token_states(texts, up_to_layer=up_to_layer, batch_size=batch_size, desc="awareness probe",
                                     progress=progress, mean_after=mean_after)


def _logistic(states: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
    """L2-regularised logistic regression on standardised states, returned as (unit direction,
    offset) such that states @ direction + offset is the logit divided by a positive constant.

    Standardising first keeps one penalty right for models whose hidden units differ in scale by
    orders of magnitude; the penalty keeps a few hundred prompts from fitting a direction per word.
    """
    mean, spread = states.mean(0), states.std(0).clamp_min(1e-4)
    z = (states - mean) / spread
    weight = torch.zeros(states.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")
    target = labels.float()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(z @ weight + bias, target)
        loss = loss + L2_PENALTY * (weight @ weight)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    raw = weight.detach() / spread  # logit = states @ raw + (bias - mean @ raw)
    scale = raw.norm().clamp_min(1e-12)
    return raw / scale, float((bias.detach() - mean @ raw) / scale)


def _mean_difference(states: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Harmful mean minus benign mean: no fitting, but it also picks up how the two sets are phrased."""
    direction = states[labels == 1].mean(0) - states[labels == 0].mean(0)
    return direction / direction.norm().clamp_min(1e-8), 0.0


_FITS = {"logistic": _logistic, "mean_difference": _mean_difference}


def _fit(method: str, states: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
    return _FITS[method](states, labels)


def fold_of(labels: torch.Tensor, folds: int, groups: Sequence[str] | None = None) -> torch.Tensor:
    """Each prompt's fold: fixed and interleaved, so every fold holds both labels. With `groups`
    (e.g. the source request each framed prompt was made from) a whole group shares one fold,
    so no request is scored by a probe that saw it in another wrapping."""
    if groups is None:
        return torch.arange(len(labels)) % folds
    if len(groups) != len(labels):
        raise InvalidMessagesError(f"Give one group per prompt: {len(groups)} groups for {len(labels)} prompts.")
    order = {group: index for index, group in enumerate(dict.fromkeys(groups))}
    fold = torch.tensor([order[group] % folds for group in groups])
    for label, name in ((1, "harmful"), (0, "benign")):
        if len(set(fold[labels == label].tolist())) < folds:
            raise InvalidMessagesError(f"The {name} prompts come from fewer than {folds} groups: give at least "
                                       f"{folds} different source requests per label, or fewer folds.")
    return fold


def probe_from_states(states: torch.Tensor, labels: torch.Tensor, *, method: ProbeMethod = "logistic",
                      folds: int = 5, max_false_positive: float = 0.05, groups: Sequence[str] | None = None,
                      reading: ProbeReading = "last") -> AwarenessProbe:
    """Pick the layer whose probe separates out-of-fold prompts best, fit it on all of them, and
    set the threshold from out-of-fold scores (in-sample scores would put benign prompts too low).

    `states` is [prompts, layers, features] (features: what `reading` reads, see `probe_states`);
    `labels` 1 for harmful, 0 for benign; `groups`, if given, keeps the prompts of one group in one
    fold (see `fold_of`).
    """
    if method not in _FITS:
        raise InvalidSettingError(f"Unknown probe method {method!r}: use one of {', '.join(PROBE_METHODS)}.")
    fold = fold_of(labels, folds, groups)
    best: tuple[float, int, torch.Tensor] | None = None
    for layer in range(states.shape[1]):
        held_out = torch.empty(len(labels))
        for k in range(folds):
            direction, offset = _fit(method, states[fold != k, layer], labels[fold != k])
            held_out[fold == k] = states[fold == k, layer] @ direction + offset
        score = auc(held_out[labels == 1], held_out[labels == 0])
        if best is None or score > best[0]:
            best = (score, layer, held_out)
    assert best is not None
    score, layer, held_out = best
    direction, offset = _fit(method, states[:, layer], labels)
    threshold = _best_threshold(held_out[labels == 1], held_out[labels == 0], max_false_positive) - offset
    fitted = states[:, layer] @ direction
    return AwarenessProbe(layer=layer, direction=direction, threshold=threshold, auc=score, method=method,
                          score_range=(float(fitted.min()), float(fitted.max())), reading=reading)


def fit_awareness_probe(
    model: nn.Module,
    tokenizer: Any,
    harmful: Sequence[Messages],
    benign: Sequence[Messages],
    *,
    method: ProbeMethod = "logistic",
    folds: int = 5,
    max_false_positive: float = 0.05,
    batch_size: int = 16,
    progress: bool = True,
    groups: Sequence[str] | None = None,
    reading: ProbeReading = "last+mean",
) -> AwarenessProbe:
    """Fit the probe on labelled prompts or conversations, read as the user sent them (no safety prompt)."""
    return fit_probe(TransformersRuntime(model, tokenizer), harmful, benign, method=method, folds=folds,
                     max_false_positive=max_false_positive, batch_size=batch_size, progress=progress, groups=groups,
                     reading=reading)


def fit_probe(runtime: ModelRuntime, harmful: Sequence[Messages], benign: Sequence[Messages], *,
              method: ProbeMethod = "logistic", folds: int = 5, max_false_positive: float = 0.05,
              batch_size: int = 16, progress: bool = True, groups: Sequence[str] | None = None,
              reading: ProbeReading = "last+mean") -> AwarenessProbe:
    """`fit_awareness_probe` on any model runtime: the states come from `runtime.last_token_states`.
    `groups` (one per prompt, harmful first) keeps each group's prompts in one fold."""
    if len(harmful) < folds or len(benign) < folds:
        raise InvalidMessagesError(f"The awareness probe needs at least {folds} harmful and {folds} benign prompts "
                                   f"(one per fold), got {len(harmful)} and {len(benign)}.")
    texts = probe_texts(ChatRenderer(runtime.tokenizer), [*harmful, *benign])
    states = probe_states(runtime, texts, reading, batch_size=batch_size, progress=progress)
    labels = torch.tensor([1] * len(harmful) + [0] * len(benign))
    return probe_from_states(states, labels, method=method, folds=folds, max_false_positive=max_false_positive,
                             groups=groups, reading=reading)
