"""The seam between the engine and a model runtime: what the engine needs from a model, and no more.

A runtime runs a model and knows nothing about safety. The engine asks it for four things:
the prompt tokens of rendered texts, last-token hidden states up to a layer (the awareness
probe), a decode loop that adds per-row steering it is handed, and log-probabilities of
continuations. What to add, where and how strongly is the method's choice (`Steering` carries
it in); how to add it (forward hooks, control vectors) is the runtime's. The transformers
runtime (`runtime/transformers_runtime.py`) is the first implementation.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from ..settings import Scope
from .decoding import DecodeClock, DecodeOptions


@dataclass(frozen=True)
class Steering:
    """What to add while a batch decodes: ``strengths[row] * directions[l]`` at the output of each
    layer ``l`` in `layers`, at the positions `scope` names (``max_tokens``: only the first that
    many generated tokens). Checked by the method before it reaches a runtime."""

    directions: Mapping[int, torch.Tensor]
    layers: tuple[int, ...]
    strengths: tuple[float, ...]  # one λ per row of the batch
    scope: Scope = "all"
    max_tokens: int | None = None


@dataclass
class PromptBatch:
    """Prompt tokens of a batch, left-padded: ids, attention mask and each row's real length."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    prompt_lengths: torch.Tensor


def encode_prompts(tokenizer: Any, texts: Sequence[str]) -> PromptBatch:
    """Rendered prompt texts as a left-padded batch (no special tokens added: the template has
    them): the same token ids on every runtime that shares the tokenizer."""
    encoded = tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False)
    return PromptBatch(encoded["input_ids"], encoded["attention_mask"], encoded["attention_mask"].sum(dim=-1))


class ModelRuntime(Protocol):
    """A loaded model as the engine uses it. Calls are not thread-safe: hold `hold()` around each."""

    name: str
    fingerprint: str
    context_window: int
    tokenizer: Any  # the chat template, encoding and decoding of text

    @property
    def num_layers(self) -> int: ...

    @property
    def hidden_size(self) -> int: ...

    def details(self) -> dict[str, Any]:
        """What `selfguard info` shows about the runtime: at least "architecture", then its own settings."""
        ...

    def hold(self) -> AbstractContextManager[None]:
        """Serialise calls on the model: wait for other threads, refuse re-entry on this one."""
        ...

    def encode(self, texts: Sequence[str]) -> PromptBatch:
        """Tokenize rendered prompt texts (no special tokens added) into a left-padded batch."""
        ...

    def last_token_states(self, texts: Sequence[str], *, up_to_layer: int | None = None, batch_size: int = 16,
                          desc: str = "activations", progress: bool = False,
                          mean_after: int | None = None) -> torch.Tensor:
        """Hidden state of each text's last token at every layer output up to `up_to_layer`:
        [texts, layers, hidden]. With `mean_after`, each state is followed by the mean of that
        layer's outputs over the text's tokens after its first `mean_after`: [texts, layers, 2 * hidden]."""
        ...

    def decode(self, batch: PromptBatch, options: DecodeOptions, steering: Steering | None, clock: DecodeClock,
               stopped: list[bool]) -> Generator[list[int | None], None, None]:
        """Per step, each row's new token, or None once the row has ended: it produced an
        end-of-sequence token, or the caller marked it in `stopped` between steps."""
        ...

    def continuation_logprobs(self, rows: Sequence[tuple[Sequence[int], Sequence[int]]],
                              steering: Steering | None = None) -> list[float]:
        """Sum of log-probabilities of each row's target tokens after its context tokens,
        with `steering` applied (its scope counted from each context's end)."""
        ...
