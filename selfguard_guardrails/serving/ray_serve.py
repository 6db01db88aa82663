"""The same API as a Ray Serve application (the `ray` extra): replicas that each load the model
once, requests batched by Ray Serve's own `@serve.batch`, replicas fixed or autoscaled.

Ray's HTTP proxy hands each request to a replica; the replica runs our FastAPI app as its ingress,
so routes, limits, errors and the extensions are the single-process server's. Batchable requests
go through `serve.batch`, which gathers them per replica; streams and turns with tools run alone
on the replica's engine thread, as in the single-process server.

Audit: every replica writes to the sink the loader gave its engine. Both file sinks are safe for
several writers on one machine (JSONL: one append under a file lock; SQLite: WAL mode with a
busy timeout), so replicas on one node can share a path and the log is complete; each record
names the replica (`context.server`, host:pid). Across nodes give each node its own path (the
locks do not hold on network file systems).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ray import serve

from ..results import GenerationResult
from .app import create_app
from .scheduler import EngineScheduler, Job
from .settings import ServerSettings

if TYPE_CHECKING:
    from ray.serve import Application

    from ..engine.selfguard import SelfGuard


class RayBatchScheduler(EngineScheduler):
    """The engine scheduler of a replica: Ray Serve gathers the batch, we group and run it."""

    def __init__(self, engine: SelfGuard, **options: Any) -> None:
        super().__init__(engine, **options)
        gathered: Any = self._gathered  # serve.batch's wrapper: its setters are not in its declared type
        gathered.set_max_batch_size(self.max_batch_size)
        gathered.set_batch_wait_timeout_s(self.max_wait_s)

    async def generate(self, job: Job) -> GenerationResult:
        if job.runs_alone:
            return await super().generate(job)
        self._admit()
        try:
            outcome = await self._gathered(job)
        finally:
            self.pending -= 1
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _gathered(self, jobs: list[Job]) -> list[GenerationResult | BaseException]:
        return await self.run_together(jobs)


def selfguard_application(load: Callable[[], SelfGuard], settings: ServerSettings | None = None, *,
                          replicas: int = 1, min_replicas: int | None = None, max_replicas: int | None = None,
                          ray_actor_options: dict[str, Any] | None = None) -> Application:
    """A Ray Serve application of the API. `load` (picklable: a module-level function or a
    `functools.partial`) builds the engine in each replica. With `min_replicas`/`max_replicas`
    Ray autoscales between them (starting from `replicas`); otherwise it runs `replicas`."""
    settings = settings or ServerSettings()
    app = create_app(load, settings, scheduler_type=RayBatchScheduler)
    scaling: dict[str, Any]
    if min_replicas is not None or max_replicas is not None:
        low = min_replicas if min_replicas is not None else 1
        high = max_replicas if max_replicas is not None else max(low, replicas)
        if not 0 <= low <= high or high < 1:
            raise ValueError(f"Replica bounds must satisfy 0 <= min <= max and max >= 1, got {low}..{high}.")
        scaling = {"autoscaling_config": {"min_replicas": low, "max_replicas": high,
                                          "initial_replicas": min(max(replicas, low), high),
                                          "target_ongoing_requests": settings.max_batch_size}}
    else:
        if replicas < 1:
            raise ValueError(f"replicas must be at least 1, got {replicas}.")
        scaling = {"num_replicas": replicas}

    @serve.deployment(name="selfguard", max_ongoing_requests=settings.max_pending,
                      ray_actor_options=ray_actor_options or {"num_cpus": 1}, **scaling)
    @serve.ingress(app)
    class SelfGuardReplica:
        """One replica: the app's lifespan loads its engine."""

    return SelfGuardReplica.bind()  # type: ignore[attr-defined]


def run_on_ray(load: Callable[[], SelfGuard], settings: ServerSettings | None = None, *, host: str = "127.0.0.1",
               port: int = 8000, replicas: int = 1, min_replicas: int | None = None,
               max_replicas: int | None = None) -> None:
    """Start (or join, when RAY_ADDRESS names a cluster) Ray, and serve the application on
    `host:port` through Ray Serve's proxy until interrupted: `selfguard serve --ray`."""
    import ray

    ray.init(ignore_reinit_error=True, include_dashboard=False)
    serve.start(http_options={"host": host, "port": port})
    application = selfguard_application(load, settings, replicas=replicas, min_replicas=min_replicas,
                                        max_replicas=max_replicas)
    serve.run(application, name="selfguard", route_prefix="/", blocking=True)
