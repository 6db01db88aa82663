"""A real uvicorn server on a loopback port, in a thread of the test process, for the server tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from selfguard_guardrails.serving import ServerSettings, create_app


@contextmanager
def running_server(engine: Any, settings: ServerSettings | None = None) -> Iterator[tuple[str, Any]]:
    """(base URL, app) of a server over `engine` on 127.0.0.1 and a free port, stopped on exit."""
    app = create_app(engine, settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True, name="test-server")
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=30)
