"""The server's metrics in Prometheus' text format (prometheus-client, one registry per app, so
two servers in one process, as in the tests, count apart)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from ..results import GenerationResult

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("selfguard_requests", "chat completion requests by HTTP status",
                                ["status"], registry=self.registry)
        self.tokens = Counter("selfguard_tokens", "tokens by kind (prompt, completion, reasoning)",
                              ["kind"], registry=self.registry)
        self.latency = Histogram("selfguard_request_seconds", "time from request to the whole answer",
                                 registry=self.registry,
                                 buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128))
        self.gate_fired = Counter("selfguard_gate_fired", "answers the awareness gate steered",
                                  registry=self.registry)
        self.leaks = Counter("selfguard_leak_findings", "leak findings in answers, by kind", ["kind"],
                             registry=self.registry)
        self.batch_size = Histogram("selfguard_batch_size", "requests decoded together in one engine batch",
                                    registry=self.registry, buckets=(1, 2, 4, 8, 16, 32))

    def answered(self, result: GenerationResult, seconds: float) -> None:
        self.requests.labels(status="200").inc()
        self.latency.observe(seconds)
        self.tokens.labels(kind="prompt").inc(result.usage.input_tokens)
        self.tokens.labels(kind="completion").inc(result.usage.output_tokens)
        self.tokens.labels(kind="reasoning").inc(result.usage.reasoning_tokens)
        if result.gate_fired:
            self.gate_fired.inc()
        for finding in result.leakage.findings if result.leakage is not None else ():
            self.leaks.labels(kind=finding.kind).inc()

    def refused(self, status: int) -> None:
        self.requests.labels(status=str(status)).inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)
