"""A shared engine that records what the adapters ask of it."""

from __future__ import annotations

from selfguard_guardrails import SelfGuard


class EngineSpy:
    """Passes everything to the engine; records each batch (its size and options). A
    `generate` is a batch of one, as in the engine."""

    def __init__(self, engine: SelfGuard) -> None:
        self.engine = engine
        self.batches: list[tuple[int, dict]] = []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def batch(self, conversations, **options):
        self.batches.append((len(conversations), options))
        return self.engine.batch(conversations, **options)

    def generate(self, messages, **options):
        return self.batch([messages], **options)[0]

    @property
    def sizes(self) -> list[int]:
        return [size for size, _ in self.batches]
