"""One engine, many concurrent requests: requests that arrive together are decoded together.

A single worker thread owns the engine. Requests wait in a queue; the dispatcher takes the first
one, waits up to `max_wait_s` for more (or until `max_batch_size` are in), groups them by what
must be the same within one engine batch (mode, decoding options, steering override) and runs
each group as one `SelfGuard.batch` call, which itself splits a `guarded` batch by the gate's
decision. While a batch decodes, new requests queue up and form the next one. Turns with tools
and streams run alone: a tool turn is several dependent generations, and a stream's pieces go
to one client as they are decoded.

A group whose batch fails on one request's input (an over-long prompt) is run again one request
at a time, so the others are answered and only the bad one gets the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..errors import SelfGuardError
from ..results import GenerationResult, StreamPiece
from ..tooling.turns import ToolTurn

if TYPE_CHECKING:
    from ..engine.selfguard import SelfGuard
    from ..settings import SteeringSetting

_DONE = object()


class ServerBusyError(Exception):
    """More requests are waiting than the server allows (`max_pending`): the client should retry later."""


@dataclass(frozen=True)
class SteeringOverride:
    """A request's own λ and layers (the server has checked them against its limits)."""

    strength: float | None = None
    layers: tuple[int, ...] | None = None

    def applied_to(self, setting: SteeringSetting) -> SteeringSetting:
        return replace(setting, strength=setting.strength if self.strength is None else self.strength,
                       layers=setting.layers if self.layers is None else self.layers, source="request")


@dataclass
class Job:
    """One request for the engine: the conversation, its engine options, and where its answer goes."""

    conversation: list[dict[str, Any]]
    options: dict[str, Any]
    override: SteeringOverride | None = None
    tool_choice: str | None = None
    future: asyncio.Future[GenerationResult] | None = None
    batch_key: tuple[Any, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.batch_key = (tuple(sorted((k, _hashable(v)) for k, v in self.shared_options.items())), self.override)

    @property
    def shared_options(self) -> dict[str, Any]:
        """The options every row of one engine batch must share: all but the audit fields, which
        `SelfGuard.batch` takes per row."""
        return {k: v for k, v in self.options.items() if k != "audit_fields"}

    @property
    def runs_alone(self) -> bool:
        return bool(self.options.get("tools"))


def _hashable(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


class EngineScheduler:
    """Batches concurrent requests onto one engine (see the module docstring)."""

    def __init__(self, engine: SelfGuard, *, max_batch_size: int = 8, max_wait_s: float = 0.01,
                 max_pending: int = 64, tool_call_retries: int = 2,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.engine = engine
        self.max_batch_size, self.max_wait_s, self.max_pending = max_batch_size, max_wait_s, max_pending
        self._tool_turn = ToolTurn(engine, tool_call_retries)
        self._queue: asyncio.Queue[Job | _StreamJob] = asyncio.Queue()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="selfguard-engine")
        self._dispatcher: asyncio.Task[None] | None = None
        self.pending = 0
        self._on_batch = on_batch or (lambda size: None)  # told each batch's size (metrics)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    async def stop(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
        self._worker.shutdown(wait=True, cancel_futures=True)

    # -- requests -----------------------------------------------------------------------------
    async def generate(self, job: Job) -> GenerationResult:
        self._admit()
        job.future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(job)
        try:
            return await job.future
        finally:
            self.pending -= 1

    def stream(self, job: Job) -> AsyncGenerator[StreamPiece | GenerationResult, None]:
        """The request's pieces, then its result; closing the iterator (a client that went away)
        stops the decode and frees the engine."""
        self._admit()
        stream_job = _StreamJob(job, asyncio.Queue(), threading.Event(), asyncio.get_running_loop())
        self._queue.put_nowait(stream_job)
        return self._pieces(stream_job)

    async def _pieces(self, stream_job: _StreamJob) -> AsyncGenerator[StreamPiece | GenerationResult, None]:
        try:
            while True:
                item = await stream_job.out.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stream_job.cancelled.set()
            self.pending -= 1

    def _admit(self) -> None:
        if self.pending >= self.max_pending:
            raise ServerBusyError(f"{self.pending} requests are already waiting (the server's limit is "
                                  f"{self.max_pending}); retry shortly.")
        self.pending += 1

    # -- the dispatcher -----------------------------------------------------------------------
    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            if isinstance(first, _StreamJob):
                self._on_batch(1)
                await loop.run_in_executor(self._worker, first.run, self.engine)
                continue
            if first.runs_alone:
                _settle(first, (await self.run_together([first]))[0])
                continue
            jobs = [first]
            deadline = loop.time() + self.max_wait_s
            while len(jobs) < self.max_batch_size and (remaining := deadline - loop.time()) > 0:
                try:
                    nxt = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
                if isinstance(nxt, _StreamJob) or nxt.runs_alone:
                    self._queue.put_nowait(nxt)  # its turn comes after this batch
                    break
                jobs.append(nxt)
            for job, outcome in zip(jobs, await self.run_together(jobs), strict=True):
                _settle(job, outcome)

    async def run_together(self, jobs: list[Job]) -> list[GenerationResult | BaseException]:
        """Each job's result or error, the jobs run in as few engine batches as their keys allow
        (Ray Serve's batch handler calls this with the requests it gathered)."""
        loop = asyncio.get_running_loop()
        groups: dict[tuple[Any, ...], list[int]] = {}
        for index, job in enumerate(jobs):
            key = ("alone", index) if job.runs_alone else job.batch_key
            groups.setdefault(key, []).append(index)
        outcomes: dict[int, GenerationResult | BaseException] = {}
        for rows in groups.values():
            group = [jobs[i] for i in rows]
            work = self._run_tool_turn if group[0].runs_alone else self._run_batch
            outcomes.update(zip(rows, await self._run(loop, group, work), strict=True))
        return [outcomes[index] for index in range(len(jobs))]

    async def _run(self, loop: asyncio.AbstractEventLoop, jobs: list[Job],
                   work: Callable[[list[Job]], list[GenerationResult]]) -> list[GenerationResult | BaseException]:
        try:
            return list(await loop.run_in_executor(self._worker, work, jobs))
        except Exception as exc:  # handed to the waiting requests, not swallowed
            if len(jobs) > 1 and isinstance(exc, SelfGuardError):  # one request's bad input: answer the others
                return [(await self._run(loop, [job], work))[0] for job in jobs]
            return [exc] * len(jobs)

    # -- in the worker thread -------------------------------------------------------------------
    def _run_batch(self, jobs: list[Job]) -> list[GenerationResult]:
        self._on_batch(len(jobs))
        with _steering_override(self.engine, jobs[0].override):
            return self.engine.batch([job.conversation for job in jobs], **jobs[0].shared_options,
                                     audit_fields=[job.options.get("audit_fields") or {} for job in jobs])

    def _run_tool_turn(self, jobs: list[Job]) -> list[GenerationResult]:
        (job,) = jobs
        self._on_batch(1)
        with _steering_override(self.engine, job.override):
            return [self._tool_turn.run(job.conversation, job.options)]


def _settle(job: Job, outcome: GenerationResult | BaseException) -> None:
    if job.future is None or job.future.done():
        return  # the client went away
    if isinstance(outcome, BaseException):
        job.future.set_exception(outcome)
    else:
        job.future.set_result(outcome)


@contextlib.contextmanager
def _steering_override(engine: SelfGuard, override: SteeringOverride | None) -> Iterator[None]:
    """The request's λ and layers for this call only; only the worker thread calls the engine."""
    if override is None:
        yield
        return
    previous = engine.use_setting(override.applied_to(engine.setting))
    try:
        yield
    finally:
        engine.use_setting(previous)


@dataclass
class _StreamJob:
    job: Job
    out: asyncio.Queue[Any]
    cancelled: threading.Event
    loop: asyncio.AbstractEventLoop

    def run(self, engine: SelfGuard) -> None:
        """Decode in the worker thread, handing each piece to the client's queue; stop when the
        client has gone (the engine's stream is closed, which ends its decode)."""
        def send(item: Any) -> None:
            self.loop.call_soon_threadsafe(self.out.put_nowait, item)

        if self.cancelled.is_set():
            return
        try:
            with _steering_override(engine, self.job.override):
                pieces = engine.stream(self.job.conversation, **self.job.options)
                try:
                    for piece in pieces:
                        if self.cancelled.is_set():
                            return
                        send(piece)
                finally:
                    pieces.close()  # type: ignore[attr-defined]
        except Exception as exc:  # raised again in the request's own task
            send(exc)
            return
        send(_DONE)
