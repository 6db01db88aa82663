"""Fast ranking of calibration candidates without generating: teacher-forced refusal log-probability.

For every prompt we ask how likely a candidate makes the model to open its answer with a
refusal: the log-probability of a few refusal openings, read in one forward pass with the
candidate's steering on. (Odds against compliance openings were tried and dropped: against
fixed ones such as "Sure, here is", which a small model rarely says, it looks likely to refuse
while it complies; against its own plain opening, the odds keep rising as steering breaks the
text, since the plain opening gets unlikely too.)
For scope `generated` the prompt is read once per batch and its KV cache reused by every
candidate (steering there does not touch prompt positions), so a candidate costs only the few
opening tokens. On benign prompts the same pass gives the KL divergence from the plain model
along its own greedy opening: what the candidate costs ordinary answers. Every prompt is
scored as if steered; the awareness gate is applied afterwards (`gated`), so any number of gate
thresholds costs nothing more.

The first opening token is predicted from the last prompt position, which scope `generated`
never steers and scope `answer` does, exactly as in real generation (an `answer` candidate
reads its prompts itself, since steering the last prompt token changes the cache).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from ..method.steering import steer
from ..runtime.locking import hold_model
from ..settings import Mode
from .grid import Candidate

REFUSAL_OPENINGS = (
    "I'm sorry, but I can't help with that.",
    "I cannot help with this request.",
)
FALLBACK_OPENING = "Sure, here is what you asked for."  # when the plain model says nothing at all
# The decision to refuse shows in the first few tokens; each further token costs a forward
# position per opening, per prompt, per candidate.
OPENING_TOKENS = 6
PLAIN = Candidate(Mode.PLAIN)


@dataclass
class CandidateScores:
    """Per prompt: the log-probability of opening with a refusal, and the KL from plain along its own opening."""

    refusal_logprobs: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)

    @property
    def refusal_logprob(self) -> float:
        """Mean log-probability of a refusal opening. It rises as steering makes the model decline
        and falls again once steering breaks the text (unlike odds against the plain opening,
        which keep rising as the text degenerates)."""
        return sum(self.refusal_logprobs) / len(self.refusal_logprobs) if self.refusal_logprobs else 0.0

    @property
    def mean_kl(self) -> float:
        return sum(self.kl) / len(self.kl) if self.kl else 0.0


@dataclass
class _Openings:
    """Per prompt: the refusal openings, then the plain model's own opening; right-padded [rows*K, L]."""

    ids: torch.Tensor
    mask: torch.Tensor
    refusals: int

    @classmethod
    def build(cls, refusals: Sequence[Sequence[int]], own: Sequence[Sequence[int]], pad: int) -> _Openings:
        rows = [list(r) for prompt_own in own for r in (*refusals, prompt_own)]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        return cls(ids, mask, len(refusals))

    @property
    def count(self) -> int:
        """Openings per prompt."""
        return self.refusals + 1


def _token_logprobs(first: torch.Tensor, rest: torch.Tensor, openings: _Openings) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs [rows*K, L] of every opening token and the distributions [rows*K, L, V] they come from.

    `first` [rows*K, V]: log-probs after the prompt; `rest` [rows*K, L-1, V]: after each opening token
    but the last (whose prediction no opening needs, so it is never fed).
    """
    dists = torch.cat([first[:, None], rest], dim=1)
    picked = dists.gather(-1, openings.ids[..., None]).squeeze(-1) * openings.mask
    return picked, dists


def _refusal_logprob(picked: torch.Tensor, openings: _Openings, rows: int) -> torch.Tensor:
    """log Σ P(refusal openings), per prompt."""
    totals = picked.sum(-1).view(rows, openings.count)
    return torch.logsumexp(totals[:, : openings.refusals], dim=-1)


def gated(scores: CandidateScores, plain: CandidateScores, flags: Sequence[bool]) -> CandidateScores:
    """A candidate's scores under the awareness gate: prompts it does not flag run plain (as in the
    engine), so they keep plain's refusal log-probability and cost no KL."""
    kls = scores.kl or [0.0] * len(flags)
    return CandidateScores(
        refusal_logprobs=[mine if flag else base for mine, base, flag in
                          zip(scores.refusal_logprobs, plain.refusal_logprobs, flags, strict=True)],
        kl=[kl if flag else 0.0 for kl, flag in zip(kls, flags, strict=True)] if scores.kl else [])


def _kl(baseline: torch.Tensor, dists: torch.Tensor, openings: _Openings, rows: int) -> torch.Tensor:
    """Mean KL(plain || candidate) per prompt, over the positions of plain's own opening."""
    per_position = (baseline.exp() * (baseline - dists)).sum(-1).clamp(min=0.0)  # [rows*K, L]
    own = openings.mask.view(rows, openings.count, -1)[:, openings.refusals].float()
    per_position = per_position.view(rows, openings.count, -1)[:, openings.refusals]
    return (per_position * own).sum(-1) / own.sum(-1)


class CandidateScorer:
    """Scores many candidates on one prompt set, sharing each batch's prefill between them."""

    def __init__(self, engine: Any, *, batch_size: int = 8) -> None:
        self.engine = engine
        self.model = engine.loaded.torch_model("Calibration")
        self.tokenizer = engine.loaded.tokenizer
        self.batch_size = batch_size
        self._refusals = [self._tokens(t) for t in REFUSAL_OPENINGS]
        self._fallback = self._tokens(FALLBACK_OPENING)
        self._pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.device = next(self.model.parameters()).device
        accepted = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in accepted else "past_key_values"
        self._trims_logits = "logits_to_keep" in accepted

    def score(self, prompts: Sequence[str], candidates: Sequence[Candidate], *, with_kl: bool,
              on_batch: Callable[[int], None] | None = None) -> dict[Candidate, CandidateScores]:
        """Scores for plain and every candidate, in prompt order, as if every prompt were steered
        (`gated` then applies an awareness gate at any threshold, for free)."""
        everything = [PLAIN, *[c for c in candidates if c != PLAIN]]
        rows = list(zip(prompts, self.own_openings(prompts), strict=True))
        return self._score_all(rows, everything, with_kl, on_batch)

    def own_openings(self, prompts: Sequence[str]) -> list[list[int]]:
        """The first tokens the plain model answers each prompt with (greedy)."""
        opened: list[list[int]] = []
        for start in range(0, len(prompts), self.batch_size):
            results = self.engine.batch(list(prompts[start:start + self.batch_size]), mode=Mode.PLAIN,
                                        max_new_tokens=OPENING_TOKENS)
            opened += [self._tokens(r.answer) or self._fallback for r in results]
        return opened

    def _tokens(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"][:OPENING_TOKENS]

    def _score_all(self, rows: list[tuple[str, list[int]]], candidates: list[Candidate], with_kl: bool,
                   on_batch: Callable[[int], None] | None) -> dict[Candidate, CandidateScores]:
        scores = {c: CandidateScores() for c in candidates}
        with torch.inference_mode(), hold_model(self.model):
            for start in range(0, len(rows), self.batch_size):
                batch = rows[start:start + self.batch_size]
                openings = _Openings.build(self._refusals, [own for _, own in batch], self._pad)
                self._score_batch([prompt for prompt, _ in batch], openings, candidates, scores, with_kl)
                if on_batch is not None:
                    on_batch(len(batch))
        return scores

    def _score_batch(self, prompts: list[str], openings: _Openings, candidates: list[Candidate],
                     scores: dict[Candidate, CandidateScores], with_kl: bool) -> None:
        rows = len(prompts)
        baseline: tuple[torch.Tensor, torch.Tensor] | None = None
        for uses_prompt in (False, True):
            group = [c for c in candidates if c.mode.uses_prompt == uses_prompt]
            if not group:
                continue
            ids, mask = self._encode(prompts, Mode.PROMPT if uses_prompt else Mode.PLAIN)
            shared = [c for c in group if not c.mode.uses_steering or c.scope == "generated"]
            prefill = self._prefill(ids, mask, None, openings.count) if shared else None
            for candidate in group:
                if candidate in shared:
                    assert prefill is not None  # computed above whenever `shared` has candidates
                    first, cache, full_mask = prefill
                else:
                    first, cache, full_mask = self._prefill(ids, mask, candidate, openings.count)
                picked, dists = self._openings(candidate, openings, first, cache, full_mask)
                baseline = baseline or (picked, dists)
                into = scores[candidate]
                into.refusal_logprobs += _refusal_logprob(picked, openings, rows).tolist()
                into.kl += (_kl(baseline[1], dists, openings, rows) if with_kl else torch.zeros(rows)).tolist()

    # -- forward passes -------------------------------------------------------------------
    def _encode(self, prompts: list[str], mode: Mode) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded prompt rows as the mode renders them."""
        texts = [self.engine.render_applied(p, mode) for p in prompts]
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            self.tokenizer.padding_side = side
        return encoded["input_ids"].to(self.device), encoded["attention_mask"].to(self.device)

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                 cache: DynamicCache, keep: int = 0) -> torch.Tensor:
        """Log-probs of the last `keep` positions (0 = all): a full-vocabulary row per prompt token
        would cost gigabytes."""
        options = {self._cache_kw: cache, "logits_to_keep": keep} if self._trims_logits else {self._cache_kw: cache}
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **options)
        logits = out.logits if self._trims_logits or keep == 0 else out.logits[:, -keep:]
        return torch.log_softmax(logits.float(), dim=-1).cpu()

    def _prefill(self, ids: torch.Tensor, mask: torch.Tensor, candidate: Candidate | None, count: int
                 ) -> tuple[torch.Tensor, DynamicCache, torch.Tensor]:
        """Read the prompts once (steered for a scope-`all` candidate), then copy each row's cache
        once per opening: the prompt costs one pass however many openings follow."""
        cache = DynamicCache(config=self.model.config)
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        with self._steering(candidate, mask.sum(-1)):
            first = self._forward(ids, mask, positions, cache, keep=1)[:, -1]
        cache.batch_repeat_interleave(count)
        return first.repeat_interleave(count, 0), cache, mask.repeat_interleave(count, 0)

    def _steering(self, candidate: Candidate | None, prompt_lengths: torch.Tensor) -> Any:
        if candidate is None or not candidate.mode.uses_steering:
            return nullcontext()
        return steer(self.model, self.engine.vector, strength=candidate.strength, layers=candidate.layers,
                     scope=candidate.scope, prompt_lengths=prompt_lengths, max_tokens=candidate.max_tokens)

    def _openings(self, candidate: Candidate, openings: _Openings, first: torch.Tensor, cache: DynamicCache,
                  mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-force every opening after its prompt on the prompt cache, then trim the cache back."""
        lengths = mask.sum(-1)
        opening_ids = openings.ids[:, :-1].to(self.device)
        if opening_ids.shape[1] == 0:  # one-token openings: the prompt pass already predicted everything
            return _token_logprobs(first, first[:, None][:, :0], openings)
        opening_mask = openings.mask[:, :-1].to(self.device)
        positions = lengths[:, None] + torch.arange(opening_ids.shape[1], device=self.device)
        try:
            with self._steering(candidate, lengths):
                rest = self._forward(opening_ids, torch.cat([mask, opening_mask], -1), positions, cache)
        finally:
            cache.crop(-opening_ids.shape[1])  # back to the prompt for the next candidate
        return _token_logprobs(first, rest, openings)
