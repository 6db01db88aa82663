"""The OpenAI-compatible HTTP API over one engine (FastAPI): chat completions, models, health, metrics.

Every request error is an OpenAI-style error body with a 4xx status and a message that names
the problem; an unexpected failure is a 500 whose body says only that (the trace goes to the
server's log, never to the client).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive, Scope, Send

from ..errors import PromptTooLongError, SelfGuardError
from ..leakage.policy import LeakBlockedError
from ..results import GenerationResult, StreamPiece
from ..runtime.chat import normalize_messages
from ..runtime.reasoning import Channel
from ..settings import Mode
from ..tooling.parsing import parse_tool_calls
from ..tooling.turns import tool_options
from . import responses
from .metrics import CONTENT_TYPE, ServerMetrics
from .scheduler import EngineScheduler, Job, ServerBusyError, SteeringOverride
from .settings import ServerSettings
from .wire import ChatCompletionRequest, engine_messages, tool_choice_value

if TYPE_CHECKING:
    from ..engine.selfguard import SelfGuard

logger = logging.getLogger(__name__)

class RequestError(Exception):
    """A request the server refuses: its status, message and the parameter at fault."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind


class RequestTooLargeError(RequestError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is over this server's limit of {limit} bytes.")


class ServerState:
    """The engine (once loaded), its scheduler and the metrics of one app."""

    def __init__(self, settings: ServerSettings, scheduler_type: type[EngineScheduler] = EngineScheduler) -> None:
        self.settings, self.scheduler_type = settings, scheduler_type
        self.instance = ""  # host:pid of the process serving (a Ray replica's own), set when the engine is in
        self.metrics = ServerMetrics()
        self.engine: SelfGuard | None = None
        self.scheduler: EngineScheduler | None = None
        self.load_error: str | None = None

    def attach(self, engine: SelfGuard) -> None:
        check_leak_policy(engine)
        if engine.default_mode.value not in self.settings.allowed_modes:
            raise SelfGuardError(f"The engine's default mode {engine.default_mode.value!r} is not among the modes "
                                 f"requests may use ({', '.join(self.settings.allowed_modes)}): allow it, or "
                                 "start the engine in one of those.")
        self.scheduler = self.scheduler_type(engine, max_batch_size=self.settings.max_batch_size,
                                         max_wait_s=self.settings.max_wait_ms / 1000,
                                         max_pending=self.settings.max_pending,
                                         on_batch=self.metrics.batch_size.observe)
        self.scheduler.start()
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.engine = engine

    @property
    def model_name(self) -> str:
        if self.settings.model_name:
            return self.settings.model_name
        return self.engine.runtime.name if self.engine is not None else "selfguard"


def check_leak_policy(engine: SelfGuard) -> None:
    """A server answers a blocked leak with the policy's refusal: a policy that raises instead
    would fail every request batched with the leaking one."""
    policy = engine.leaks.policy if engine.leaks is not None else None
    if policy is not None and policy.block_with == "raise" and (
            policy.kinds_with("block") or policy.kinds_with("regenerate")):
        raise SelfGuardError("The engine's leak policy blocks by raising; a server must answer a blocked leak "
                             "with a refusal: build the engine with leak_policy={..., 'block_with': 'refusal'}.")


def create_app(engine: SelfGuard | Callable[[], SelfGuard], settings: ServerSettings | None = None, *,
               scheduler_type: type[EngineScheduler] = EngineScheduler) -> FastAPI:
    """The API over `engine`, or over the engine a zero-argument function loads: then the server
    answers at once, /health says 503 "loading" until the model is in, and requests wait for it.
    `scheduler_type` decides how concurrent requests share the engine (Ray Serve's replicas
    batch with Ray's own batching)."""
    state = ServerState(settings or ServerSettings(), scheduler_type)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from ..engine.selfguard import SelfGuard

        loader = None
        if isinstance(engine, SelfGuard):
            state.attach(engine)
        else:
            loader = asyncio.get_running_loop().create_task(_load(state, engine))
        try:
            yield
        finally:
            if loader is not None:
                loader.cancel()
            if state.scheduler is not None:
                await state.scheduler.stop()

    app = FastAPI(title="selfguard", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.selfguard = state
    _install_error_handlers(app, state)
    app.add_middleware(BodyLimit, limit=state.settings.max_request_bytes)
    if state.settings.api_key is not None:  # added last, so it runs first: nothing is read before the key
        app.add_middleware(ApiKeyGate, key=state.settings.api_key, metrics=state.metrics)

    @app.get("/health")
    async def health() -> JSONResponse:
        if state.engine is not None:
            return JSONResponse({"status": "ok", "model": state.model_name})
        status = "failed" if state.load_error else "loading"
        return JSONResponse({"status": status, "error": state.load_error}, status_code=503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.text(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        return JSONResponse({"object": "list", "data": [
            {"id": state.model_name, "object": "model", "created": 0, "owned_by": "selfguard"}]})

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> JSONResponse | StreamingResponse:
        scheduler = await _ready(state)
        job = _job_for(body, state, request)
        await asyncio.to_thread(_check_fits, scheduler.engine, job)
        names = [t.function.name for t in body.tools or []] if job.tool_choice else []
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            # a tool call is known only once the answer is whole: such a turn is sent as one piece
            pieces = _whole(scheduler.generate(job)) if job.runs_alone else scheduler.stream(job)
            return StreamingResponse(_events(pieces, state, names, include_usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        started = time.perf_counter()
        result = await scheduler.generate(job)
        state.metrics.answered(result, time.perf_counter() - started)
        parsed = parse_tool_calls(result.answer, names) if names else None
        return JSONResponse(responses.completion(result, parsed, state.model_name))

    return app


async def _load(state: ServerState, load: Callable[[], SelfGuard]) -> None:
    try:
        engine = await asyncio.get_running_loop().run_in_executor(None, load)
        state.attach(engine)
    except Exception as exc:
        logger.exception("The model did not load")
        state.load_error = f"{type(exc).__name__}: {exc}"


async def _ready(state: ServerState) -> EngineScheduler:
    while state.scheduler is None:
        if state.load_error is not None:
            raise RequestError(503, f"The model failed to load: {state.load_error}", kind="server_error")
        await asyncio.sleep(0.1)
    return state.scheduler


def _job_for(body: ChatCompletionRequest, state: ServerState, request: Request) -> Job:
    """The engine call a request asks for, after every limit and permission is checked."""
    settings, engine = state.settings, state.engine
    assert engine is not None
    if len(body.messages) > settings.max_messages:
        raise RequestError(400, f"{len(body.messages)} messages is more than this server's limit of "
                                f"{settings.max_messages}.", param="messages")
    max_tokens = body.requested_max_tokens or settings.default_max_tokens
    if max_tokens > settings.max_tokens_limit:
        raise RequestError(400, f"max_tokens {max_tokens} is above this server's limit of "
                                f"{settings.max_tokens_limit}.", param="max_tokens")
    extension = body.selfguard
    mode = _mode(extension.mode if extension else None, engine, settings)
    override = _override(extension.strength if extension else None,
                         extension.layers if extension else None, mode, engine, settings)
    conversation = engine_messages(body.messages)
    normalize_messages(conversation)  # raise a bad conversation now, before it joins a batch
    options: dict[str, Any] = {
        "mode": mode.value, "max_new_tokens": max_tokens, "temperature": body.temperature or 0.0,
        "top_p": 1.0 if body.top_p is None else body.top_p, "stop": body.stops, "seed": body.seed,
        "audit_fields": {"request_id": request.headers.get("x-request-id") or uuid.uuid4().hex,
                         "server": state.instance,
                         **({"user": body.user} if body.user else {})},
    }
    choice = tool_choice_value(body)
    if choice is not None:
        tools = [tool.model_dump(exclude_none=True) for tool in body.tools or []]
        options.update(tool_options(tools, choice, body.stops))
    return Job(conversation, options, override, choice)


def _mode(asked: str | None, engine: SelfGuard, settings: ServerSettings) -> Mode:
    mode = Mode.parse(asked) if asked is not None else engine.default_mode
    if mode.value not in settings.allowed_modes:
        raise RequestError(400, f"Mode {mode.value!r} is not allowed on this server: use one of "
                                f"{', '.join(settings.allowed_modes)}.", param="selfguard.mode")
    return mode


def _override(strength: float | None, layers: list[int] | None, mode: Mode, engine: SelfGuard,
              settings: ServerSettings) -> SteeringOverride | None:
    if strength is None and layers is None:
        return None
    if not mode.uses_steering and not mode.gated:
        raise RequestError(400, f"selfguard.strength and selfguard.layers apply to steered modes, not {mode.value!r}.",
                           param="selfguard")
    if strength is not None:
        bounds = settings.strength_range
        if bounds is None:
            raise RequestError(400, "This server does not let a request set λ (selfguard.strength); its operator can "
                                    "allow a range (strength_range, --strength-range).", param="selfguard.strength")
        if not bounds[0] <= strength <= bounds[1]:
            raise RequestError(400, f"selfguard.strength {strength} is outside this server's range "
                                    f"{bounds[0]:g}..{bounds[1]:g}.", param="selfguard.strength")
    if layers is not None:
        if not settings.allow_layer_override:
            raise RequestError(400, "This server does not let a request choose layers (selfguard.layers); its "
                                    "operator can allow it (allow_layer_override, --allow-layer-override).",
                               param="selfguard.layers")
        bad = [layer for layer in layers if not 0 <= layer < engine.num_layers]
        if not layers or bad:
            raise RequestError(400, f"selfguard.layers must be layer indices 0..{engine.num_layers - 1}, got {layers}.",
                               param="selfguard.layers")
    return SteeringOverride(strength, None if layers is None else tuple(layers))


async def _whole(result: Awaitable[GenerationResult]) -> AsyncGenerator[StreamPiece | GenerationResult, None]:
    yield await result


async def _events(pieces: AsyncGenerator[StreamPiece | GenerationResult, None], state: ServerState, names: list[str],
                  include_usage: bool) -> AsyncIterator[str]:
    """The stream as server-sent events: the role, reasoning and answer deltas, the finish with
    the Self-Guard extension, usage when asked for, then [DONE]. An error after the first event
    is sent as an error event, as OpenAI's API does."""
    cid, model, started = responses.completion_id(), state.model_name, time.perf_counter()
    yield _sse(responses.chunk(cid, model, {"role": "assistant", "content": ""}))
    try:
        async for item in pieces:
            if isinstance(item, StreamPiece):
                if item.text:
                    field = "reasoning_content" if item.channel == Channel.REASONING else "content"
                    yield _sse(responses.chunk(cid, model, {field: item.text}))
                continue
            result = item
            state.metrics.answered(result, time.perf_counter() - started)
            parsed = parse_tool_calls(result.answer, names) if names else None
            if parsed is not None:  # a whole tool turn: its text and calls in one delta
                message = responses.assistant_message(result, parsed)
                delta = {k: v for k, v in message.items() if k != "role"}
                delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(delta.get("tool_calls", []))]
                yield _sse(responses.chunk(cid, model, delta))
            yield _sse(responses.chunk(cid, model, {}, responses.finish_reason(result, parsed),
                                       selfguard=responses.selfguard_extension(result)))
            if include_usage:
                yield _sse({**responses.chunk(cid, model, {}), "choices": [], "usage": responses.usage_of(result)})
    except Exception as exc:
        status, body = _error_of(exc)
        if status >= 500:
            logger.exception("Unexpected error in a stream")
        state.metrics.refused(status)
        yield _sse(body)
    finally:
        await pieces.aclose()
    yield "data: [DONE]\n\n"


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _error_of(exc: Exception) -> tuple[int, dict[str, Any]]:
    """Status and OpenAI error body of an exception a request can cause."""
    if isinstance(exc, RequestError):
        return exc.status, responses.error_body(exc.message, exc.kind, exc.param, exc.code)
    if isinstance(exc, ServerBusyError):
        return 429, responses.error_body(str(exc), "rate_limit_error", code="server_busy")
    if isinstance(exc, PromptTooLongError):
        return 400, responses.error_body(str(exc), param="messages", code="context_length_exceeded")
    if isinstance(exc, LeakBlockedError):
        return 403, responses.error_body(str(exc), "leak_blocked")
    if isinstance(exc, SelfGuardError):
        return 400, responses.error_body(str(exc))
    return 500, responses.error_body("The server failed to answer (see its log).", "server_error")


def _install_error_handlers(app: FastAPI, state: ServerState) -> None:
    async def known(request: Request, exc: Exception) -> JSONResponse:
        status, body = _error_of(exc)
        state.metrics.refused(status)
        return JSONResponse(body, status_code=status)

    for kind in (RequestError, ServerBusyError, SelfGuardError, LeakBlockedError):
        app.add_exception_handler(kind, known)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")
        kind = problem.get("type", "")
        if kind == "json_invalid":
            where = ""
            message = f"The body is not valid JSON ({problem.get('ctx', {}).get('error', 'decode error')})."
        elif kind == "extra_forbidden":
            message = f"Unknown field {where!r}: this server applies every field it accepts and refuses the others."
        else:
            message = f"{where or 'body'}: {problem.get('msg')}"
        state.metrics.refused(400)
        return JSONResponse(responses.error_body(message, param=where or None), status_code=400)

    app.add_exception_handler(RequestValidationError, invalid)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse(responses.error_body(str(exc.detail), "invalid_request_error"),
                            status_code=exc.status_code)

    app.add_exception_handler(StarletteHTTPException, http_error)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("Unexpected error answering %s", request.url.path)
        state.metrics.refused(500)
        return JSONResponse(responses.error_body("The server failed to answer (see its log).", "server_error"),
                            status_code=500)

    app.add_exception_handler(Exception, unexpected)


class ApiKeyGate:
    """Refuse (401) a request to /v1/* or /metrics without `Authorization: Bearer <key>`, before
    its body is read; the key is compared in constant time and never logged."""

    PROTECTED = ("/v1/", "/metrics")

    def __init__(self, app: Any, key: str, metrics: ServerMetrics) -> None:
        self.app, self.key, self.metrics = app, key.encode(), metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope["path"]).startswith(self.PROTECTED):
            scheme, _, token = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                self.metrics.refused(401)
                body = responses.error_body("Missing or wrong API key: send 'Authorization: Bearer <key>' with "
                                            "the server's key.", "authentication_error", code="invalid_api_key")
                await JSONResponse(body, status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuse a body over `limit` bytes (413) whether it declares its length or is sent in chunks,
    without reading more than the limit."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            error = RequestTooLargeError(self.limit)
            response = JSONResponse(responses.error_body(error.message), status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise RequestTooLargeError(self.limit)
            return message

        await self.app(scope, limited, send)


def _check_fits(engine: SelfGuard, job: Job) -> None:
    """Refuse an over-long prompt before it joins a batch or opens a stream (in its longest form:
    `guarded` as if its gate fired)."""
    engine.check_fits(job.conversation, job.options["mode"], job.options["max_new_tokens"],
                      tools=job.options.get("tools"))
