"""A server in a background thread of this process: for notebooks, tests and examples, where
`run_server` would block."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import uvicorn

from .app import create_app
from .settings import ServerSettings

if TYPE_CHECKING:
    from ..engine.selfguard import SelfGuard


class BackgroundServer:
    """`with BackgroundServer(engine) as server: ... server.url ...`: the API on 127.0.0.1 and a
    free port (or `port`), started on entry (or `start()`), stopped on exit (or `stop()`)."""

    def __init__(self, engine: SelfGuard | Callable[[], SelfGuard], settings: ServerSettings | None = None, *,
                 host: str = "127.0.0.1", port: int = 0, start_timeout_s: float = 120.0) -> None:
        self.app = create_app(engine, settings)
        self._server = uvicorn.Server(uvicorn.Config(self.app, host=host, port=port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="selfguard-server")
        self._timeout = start_timeout_s
        self.url = ""

    def start(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + self._timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("The server stopped while starting (is the port in use? see the log above).")
            if time.monotonic() > deadline:
                raise RuntimeError(f"The server did not start within {self._timeout:g} s.")
            time.sleep(0.02)
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=60)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    @property
    def state(self) -> Any:
        """The app's state (engine, scheduler, metrics), for tests and diagnostics."""
        return self.app.state.selfguard
