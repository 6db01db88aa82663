"""How likely the model finds a text after a context (teacher forcing), for choosing among options.

A small model picks among options better by likelihood than by writing its choice: asked to
name one of three tools, the embedded model names the first whatever the question. Scoring
the other way round works (the "noisy channel" of Min et al., 2022): how likely is the user's
question after each tool's description? (docs/report.md, "Figures behind defaults".) One forward pass
scores every option.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def sequence_logprobs(model: nn.Module, rows: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[float]:
    """Sum of log-probabilities of each row's target tokens after its context tokens."""
    if not rows or any(len(context) == 0 or len(target) == 0 for context, target in rows):
        raise ValueError("every row needs a non-empty context and target")
    joined = [list(context) + list(target) for context, target in rows]
    width = max(len(r) for r in joined)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(joined):  # right padding: every row starts at position 0
        ids[index, :len(row)] = torch.tensor(row)
        mask[index, :len(row)] = 1
    device = next(model.parameters()).device
    positions = torch.arange(width).expand(len(rows), width)
    with torch.inference_mode():
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                       position_ids=positions.to(device), use_cache=False).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
    scores = []
    for index, (context, target) in enumerate(rows):
        start = len(context) - 1  # the logits at position t predict token t + 1
        predicted = logprobs[index, start:start + len(target)]
        scores.append(float(predicted.gather(-1, torch.tensor(list(target))[:, None]).sum()))
    return scores
