"""Evaluation metrics: rates with honest intervals, GSM8K answer checks, next-token KL, awareness gap,
per-group breakdowns and readability shares.

Benchmarks here are small (tens to hundreds of prompts), so every rate carries a Wilson score
interval: a refusal rate of 3/40 means little without it. The KL measures how far a mode moves
the model's very next token away from the plain model, a cheap proxy for collateral damage on
benign prompts that needs no generation and no judge.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import torch

from ..method.steering import steer
from ..runtime.chat import Messages
from ..runtime.locking import hold_model
from ..settings import Mode


@dataclass(frozen=True)
class Rate:
    """``count`` successes out of ``total`` trials, reported with a Wilson score interval."""

    count: int
    total: int

    def __post_init__(self) -> None:
        if self.total < 0 or not 0 <= self.count <= self.total:
            raise ValueError(f"A rate needs 0 <= count <= total, got {self.count}/{self.total}.")

    @property
    def value(self) -> float:
        return self.count / self.total if self.total else 0.0

    def interval(self, z: float = 1.96) -> tuple[float, float]:
        """Wilson score interval: unlike the normal approximation it stays inside [0, 1] and is
        sensible at 0/n and n/n, which small safety benchmarks hit often. Empty -> (0, 1)."""
        n = self.total
        if n == 0:
            return 0.0, 1.0
        p = self.count / n
        z2 = z * z
        denominator = 1.0 + z2 / n
        centre = (p + z2 / (2 * n)) / denominator
        half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n)) / denominator
        low = 0.0 if self.count == 0 else max(0.0, centre - half)
        high = 1.0 if self.count == n else min(1.0, centre + half)
        return low, high

    def as_dict(self) -> dict[str, float | int]:
        low, high = self.interval()
        return {"rate": self.value, "count": self.count, "total": self.total, "low": low, "high": high}


def rate(flags: Iterable[bool]) -> Rate:
    """The share of true flags (an empty input is 0/0, value 0.0, interval (0, 1))."""
    values = [bool(flag) for flag in flags]
    return Rate(sum(values), len(values))


# -- GSM8K-style answers ---------------------------------------------------------------------
# A number: optional minus (not a hyphen inside a word or range such as "10-12"), optional $,
# digits with proper thousands commas or none, optional decimals.
_NUMBER = r"(?<![\w.])(-?)\$?\s?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?"
_NUMBER_RE = re.compile(_NUMBER)
_HASHES_RE = re.compile(r"####\s*" + _NUMBER)
_BOXED_RE = re.compile(r"\\boxed\{\s*\\?" + _NUMBER)
_ANSWER_IS_RE = re.compile(r"answer\s*(?:is\b|:|=)\s*:?\s*" + _NUMBER, re.IGNORECASE)
_EQUALS_RE = re.compile(r"=\s*" + _NUMBER)


def _normalise(sign: str, digits: str, decimals: str | None) -> str:
    """'1,234' -> '1234', '18.00' -> '18', '3.50' -> '3.5', '-0' -> '0': one spelling per value."""
    whole = digits.replace(",", "").lstrip("0") or "0"
    fraction = (decimals or "").lstrip(".").rstrip("0")
    text = f"{whole}.{fraction}" if fraction else whole
    return text if text == "0" or not sign else f"-{text}"


def extract_final_number(text: str) -> str | None:
    """The final answer in a model's worked solution, normalised; None when there is no number.

    Preference order follows how answers are written: GSM8K's ``#### N`` (or ``\\boxed{N}``), then
    the last "answer is N", then "= N" on the last line, else simply the last number in the text.
    """
    text = text.replace("\u2212", "-")  # unicode minus
    for pattern in (_HASHES_RE, _BOXED_RE, _ANSWER_IS_RE):
        matches = pattern.findall(text)
        if matches:
            return _normalise(*matches[-1])
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if lines and (matches := _EQUALS_RE.findall(lines[-1])):
        return _normalise(*matches[-1])
    matches = _NUMBER_RE.findall(text)
    return _normalise(*matches[-1]) if matches else None


def is_correct_answer(answer: str, target: str | int | float) -> bool:
    """True when the answer's final number equals the target numerically ("18.00" == 18).

    The target may be a GSM8K solution ("... #### 72") or a number written with commas; a target
    with no number at all is a data error and raises ValueError rather than scoring silently.
    """
    expected = extract_final_number(str(target))
    if expected is None:
        raise ValueError(f"The target {target!r} holds no number.")
    got = extract_final_number(answer)
    return got is not None and math.isclose(float(got), float(expected), rel_tol=1e-9, abs_tol=1e-9)


# -- next-token KL ---------------------------------------------------------------------------
def _last_logprobs(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], batch_size: int) -> torch.Tensor:
    """float32 log-probabilities of the next token after each text, from left-padded batches."""
    device = next(model.parameters()).device
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # the last real token must sit at position -1 in every row
    rows = []
    try:
        for start in range(0, len(texts), batch_size):
            encoded = tokenizer(list(texts[start:start + batch_size]), return_tensors="pt", padding=True,
                                add_special_tokens=False)
            ids = encoded["input_ids"].to(device)
            mask = encoded["attention_mask"].to(device)
            positions = (mask.long().cumsum(-1) - 1).clamp(min=0)  # pads must not shift real positions
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).logits
            rows.append(torch.log_softmax(logits[:, -1, :].float(), dim=-1).cpu())
    finally:
        tokenizer.padding_side = padding_side
    return torch.cat(rows, dim=0)


def next_token_kl(engine: Any, prompts: Sequence[Messages], mode: str, *, batch_size: int = 8,
                  strength: float | None = None) -> list[float]:
    """Per prompt, KL(p_plain || p_mode) in nats of the next-token distribution after the prompt.

    A small KL on benign prompts means the mode leaves ordinary behaviour alone. ``plain`` is 0.
    `strength` replaces the setting's λ (a fired gate's). The gate itself is the caller's: every
    prompt is read as `mode` applies to a prompt it acts on.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    resolved = Mode.parse(mode)
    if not prompts:
        return []
    model, tokenizer = engine.loaded.torch_model("The KL measure"), engine.loaded.tokenizer
    plain_texts = [engine.render_applied(prompt, Mode.PLAIN) for prompt in prompts]
    mode_texts = [engine.render_applied(prompt, resolved) for prompt in prompts]
    with torch.inference_mode(), hold_model(model):
        plain = _last_logprobs(model, tokenizer, plain_texts, batch_size)
        if mode_texts == plain_texts and not resolved.uses_steering:
            return [0.0] * len(prompts)  # same text, same model: identical distributions
        with ExitStack() as stack:
            if resolved.uses_steering:
                vector, setting = engine.vector, engine.setting
                vector.check_fits(num_layers=engine.num_layers, hidden_size=vector.hidden_size,
                                  fingerprint=engine.loaded.fingerprint)
                # Scope "all", not the setting's scope: this is a single prefill pass with no
                # generated tokens, so "generated" would steer nothing and report a KL of 0.
                stack.enter_context(steer(model, vector, strength=setting.strength if strength is None else strength,
                                          layers=setting.layers, scope="all"))
            steered = _last_logprobs(model, tokenizer, mode_texts, batch_size)
    kl = (plain.exp() * (plain - steered)).sum(dim=-1).clamp(min=0.0)  # clamp: float noise around 0
    return [float(value) for value in kl]


# -- awareness vs compliance -----------------------------------------------------------------
@dataclass(frozen=True)
class AwarenessComplianceGap:
    """On harmful prompts: how often the probe knows, how often the model complies anyway."""

    aware: Rate
    complied: Rate
    aware_and_complied: Rate

    def as_dict(self) -> dict[str, dict[str, float | int]]:
        return {"aware": self.aware.as_dict(), "complied": self.complied.as_dict(),
                "aware_and_complied": self.aware_and_complied.as_dict()}


def awareness_compliance_gap(awareness_scores: Sequence[float], refused: Sequence[bool]) -> AwarenessComplianceGap:
    """The share of harmful prompts the model recognises as harmful (score >= 0) yet still answers:
    the gap steering is meant to close, since the knowledge is there but does not act."""
    if len(awareness_scores) != len(refused):
        raise ValueError(f"{len(awareness_scores)} awareness scores but {len(refused)} refusal verdicts: "
                         "they must be aligned per harmful prompt.")
    aware = [float(score) >= 0.0 for score in awareness_scores]
    complied = [not bool(r) for r in refused]
    return AwarenessComplianceGap(aware=rate(aware), complied=rate(complied),
                                  aware_and_complied=rate(a and c for a, c in zip(aware, complied, strict=True)))


# -- per group and readability ---------------------------------------------------------------
Record = Mapping[str, Any]
NO_GROUP = "(none)"  # the group of a row whose group cell is empty


def _of(records: Iterable[Record], name: str) -> list[Record]:
    return [r for r in records if r["set"] == name]


def group_rates(records: Sequence[Record], group_of: Callable[[Record], str | None]) -> dict[str, dict[str, Any]]:
    """Per group (in first-seen order), over harmful and benign records: harmful and benign refusal,
    degeneration, and where the records carry probe scores (`guarded` mode) the share the gate fired
    on (score >= 0) per set: one headline rate can hide a framing that slips past the gate."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        if record["set"] in ("harmful", "benign"):
            groups.setdefault(group_of(record) or NO_GROUP, []).append(record)
    return {group: _group_entry(mine) for group, mine in groups.items()}


def _group_entry(records: Sequence[Record]) -> dict[str, Any]:
    entry: dict[str, Any] = {"harmful_refusal": rate(r["refused"] for r in _of(records, "harmful")).as_dict(),
                             "benign_refusal": rate(r["refused"] for r in _of(records, "benign")).as_dict(),
                             "degeneration": rate(r["degenerate"] for r in records).as_dict()}
    for name in ("harmful", "benign"):
        scores = [r["awareness"] for r in _of(records, name) if r.get("awareness") is not None]
        if scores:
            entry[f"{name}_gate_fired"] = rate(score >= 0 for score in scores).as_dict()
    return entry


def readability_rates(records: Sequence[Record]) -> dict[str, dict[str, float | int]]:
    """`instruction_echo` over every answer, `refusal_fragments` over the refusals (records' `echo`
    and `fragments` flags; see readability.py)."""
    return {"instruction_echo": rate(r["echo"] for r in records).as_dict(),
            "refusal_fragments": rate(r["fragments"] for r in records if r["refused"]).as_dict()}
