"""Engines on tiny random models, and the random steering vectors they use, shared by the mechanics tests."""

from __future__ import annotations

import math

import torch

from selfguard_guardrails import SelfGuard, SteeringSetting
from selfguard_guardrails.method.probe import AwarenessProbe
from selfguard_guardrails.method.vector import SteeringVector
from selfguard_guardrails.runtime.layers import decoder_layers
from selfguard_guardrails.runtime.loading import LoadedModel, hidden_size
from tests.conftest import tiny_llama

PROMPTS = ["Tell me a story about a cat.", "Hi", "What is the capital of France and why is it famous?"]


def random_vector(model, seed: int = 1) -> SteeringVector:
    generator = torch.Generator().manual_seed(seed)
    layers = len(decoder_layers(model))
    width = hidden_size(model)
    return SteeringVector(
        directions={i: torch.randn(width, generator=generator) for i in range(layers)},
        model_fingerprint="test", num_layers=layers, hidden_size=width, model_name="tiny",
    )


def make_engine(tokenizer, builder=tiny_llama, context_window: int = 256, **options) -> SelfGuard:
    model = builder(vocab_size=len(tokenizer))
    loaded = LoadedModel(model=model, tokenizer=tokenizer, name="tiny", fingerprint="test",
                         context_window=context_window, source="object")
    options.setdefault("setting", SteeringSetting(layers=(1, 2), strength=2.0))
    return SelfGuard(loaded, vector=random_vector(model), progress=False, **options)


def gated_engine(tokenizer, threshold: float, direction: torch.Tensor | None = None, **options) -> SelfGuard:
    model = tiny_llama(vocab_size=len(tokenizer))
    vector = random_vector(model)
    direction = torch.ones(32) / math.sqrt(32) if direction is None else direction
    vector.probe = AwarenessProbe(layer=2, direction=direction, threshold=threshold, auc=0.9)
    loaded = LoadedModel(model=model, tokenizer=tokenizer, name="tiny", fingerprint="test", context_window=256,
                         source="object")
    options.setdefault("setting", SteeringSetting(layers=(1, 2), strength=2.0))
    return SelfGuard(loaded, vector=vector, progress=False, **options)
