"""A small greedy/sampling decode loop over a KV cache, one padded batch at a time.

We own the loop (rather than `model.generate`) so streaming is a plain generator: a caller
that stops iterating stops generation at once, with no background thread to cancel.
Positions are absolute per row (left padding), so token-scoped steering sees real positions.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import DynamicCache

from .errors import InvalidSettingError


@dataclass(frozen=True)
class DecodeOptions:
    """Validated generation options; temperature 0 means greedy."""

    max_new_tokens: int
    min_new_tokens: int = 0
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise InvalidSettingError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}.")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise InvalidSettingError(f"min_new_tokens must be between 0 and max_new_tokens "
                                      f"({self.max_new_tokens}), got {self.min_new_tokens!r}.")
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
                and self.temperature >= 0):
            raise InvalidSettingError(f"temperature must be a finite number >= 0, got {self.temperature!r}.")
        if not 0 < self.top_p <= 1:
            raise InvalidSettingError(f"top_p must be in (0, 1], got {self.top_p!r}.")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise InvalidSettingError("stop must be a list of non-empty strings.")


@dataclass
class DecodeClock:
    """Prefill and decode wall time, filled in by the loop."""

    started: float = field(default_factory=time.perf_counter)
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0


def _sample(logits: torch.Tensor, options: DecodeOptions, generator: torch.Generator | None) -> torch.Tensor:
    if options.temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / options.temperature, dim=-1)
    if options.top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        keep = sorted_probs.cumsum(-1) - sorted_probs < options.top_p
        sorted_probs = sorted_probs * keep
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class Decoder:
    """Runs the forward passes for one model; knows which optional arguments it accepts."""

    def __init__(self, model: nn.Module, eos_ids: Sequence[int], pad_id: int) -> None:
        self.model = model
        self.eos_ids = torch.tensor(sorted(set(eos_ids)), dtype=torch.long)
        self.pad_id = pad_id
        accepted = inspect.signature(model.forward).parameters
        self._logits_kw = {"logits_to_keep": 1} if "logits_to_keep" in accepted else {}
        self._cache_kw = "cache" if "cache" in accepted else "past_key_values"
        self.device = next(model.parameters()).device

    def steps(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, options: DecodeOptions,
        finished: torch.Tensor, clock: DecodeClock,
    ) -> Iterator[torch.Tensor]:
        """Yield the next token of every row, step by step. Rows marked in `finished` get padding.

        The caller may set more rows of `finished` (stop strings) between steps; the loop ends
        when every row is finished or the budget is spent.
        """
        ids = input_ids.to(self.device)
        mask = attention_mask.to(self.device)
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=getattr(self.model, "config", None))
        generator = torch.Generator(self.device).manual_seed(options.seed) if options.seed is not None else None
        eos = self.eos_ids.to(self.device)
        for step in range(options.max_new_tokens):
            tick = time.perf_counter()
            with torch.inference_mode():
                output = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                    use_cache=True, **{self._cache_kw: cache}, **self._logits_kw)
                logits = output.logits[:, -1, :]
                if step < options.min_new_tokens and len(eos):
                    logits = logits.index_fill(-1, eos, float("-inf"))
                tokens = _sample(logits, options, generator).cpu()
            elapsed = time.perf_counter() - tick
            if step == 0:
                clock.prefill_seconds += elapsed
            else:
                clock.decode_seconds += elapsed
            tokens = torch.where(finished, torch.full_like(tokens, self.pad_id), tokens)
            finished |= torch.isin(tokens, self.eos_ids)
            yield tokens
            if bool(finished.all()):
                return
            ids = tokens.unsqueeze(-1).to(self.device)
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
            positions = positions[:, -1:] + 1
