"""The transformers runtime: a Hugging Face causal LM in PyTorch behind the engine's `ModelRuntime` seam.

Steering is applied with forward hooks on the decoder layers (`steering_hooks.py`), activations
are read through hooks on the same layers (`activations.py`), and decoding is our own KV-cache
loop (`decoding.py`). Hooks are global to the model, so every call runs under `hold()`.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from contextlib import AbstractContextManager, ExitStack
from typing import Any

import torch
from torch import nn

from .activations import last_token_activations
from .decoding import DecodeClock, DecodeOptions, Decoder
from .layers import decoder_layers
from .loading import LoadedModel, hidden_size
from .loading.identity import context_window as context_window_of
from .locking import hold_model
from .logprobs import sequence_logprobs
from .protocol import PromptBatch, Steering, encode_prompts
from .steering_hooks import layer_additions


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every token that ends an answer: the generation config's (one or a list) and the tokenizer's."""
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)


class TransformersRuntime:
    """A loaded transformers model: the engine's `ModelRuntime`."""

    def __init__(self, model: nn.Module, tokenizer: Any, *, name: str = "", fingerprint: str = "",
                 context_window: int | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.fingerprint = fingerprint
        self.context_window = context_window or context_window_of(model)
        self._decoder = Decoder(model, _eos_ids(model, tokenizer), tokenizer.pad_token_id)

    @classmethod
    def from_loaded(cls, loaded: LoadedModel) -> TransformersRuntime:
        return cls(loaded.torch_model("The transformers runtime"), loaded.tokenizer, name=loaded.name,
                   fingerprint=loaded.fingerprint, context_window=loaded.context_window)

    @property
    def num_layers(self) -> int:
        return len(decoder_layers(self.model))

    @property
    def hidden_size(self) -> int:
        return hidden_size(self.model)

    def details(self) -> dict[str, Any]:
        return {"architecture": type(self.model).__name__, "torch_threads": torch.get_num_threads()}

    def hold(self) -> AbstractContextManager[None]:
        return hold_model(self.model)

    def encode(self, texts: Sequence[str]) -> PromptBatch:
        return encode_prompts(self.tokenizer, texts)

    def last_token_states(self, texts: Sequence[str], *, up_to_layer: int | None = None, batch_size: int = 16,
                          desc: str = "activations", progress: bool = False,
                          mean_after: int | None = None) -> torch.Tensor:
        return last_token_activations(self.model, self.tokenizer, texts, batch_size=batch_size, desc=desc,
                                      progress=progress, up_to_layer=up_to_layer, mean_after=mean_after)

    def _steered(self, steering: Steering | None, prompt_lengths: torch.Tensor) -> ExitStack:
        """The hooks adding `steering` (none for None), removed when the returned stack closes."""
        stack = ExitStack()
        if steering is not None:
            scale = torch.tensor(steering.strengths, dtype=torch.float32)[:, None, None]
            stack.enter_context(layer_additions(self.model, steering.directions, scale=scale, layers=steering.layers,
                                                scope=steering.scope, prompt_lengths=prompt_lengths,
                                                max_tokens=steering.max_tokens))
        return stack

    def decode(self, batch: PromptBatch, options: DecodeOptions, steering: Steering | None, clock: DecodeClock,
               stopped: list[bool]) -> Generator[list[int | None], None, None]:
        with self._steered(steering, batch.prompt_lengths):
            yield from self._decoder.steps(batch.input_ids, batch.attention_mask, options, clock, stopped)

    def continuation_logprobs(self, rows: Sequence[tuple[Sequence[int], Sequence[int]]],
                              steering: Steering | None = None) -> list[float]:
        lengths = torch.tensor([len(context) for context, _ in rows], dtype=torch.long)
        with self._steered(steering, lengths):
            return sequence_logprobs(self.model, rows)
