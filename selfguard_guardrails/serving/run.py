"""Start the API with uvicorn: the server `selfguard serve` runs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import uvicorn

from .app import create_app
from .settings import ServerSettings

if TYPE_CHECKING:
    from ..engine.selfguard import SelfGuard

logger = logging.getLogger(__name__)


def run_server(engine: SelfGuard | Callable[[], SelfGuard], settings: ServerSettings | None = None, *,
               host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve until interrupted. Bound to the loopback address unless `host` says otherwise: a
    server reachable from other machines should have an `api_key`."""
    settings = settings or ServerSettings()
    if host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        logger.warning("Serving on %s without an API key: anyone who can reach this address can use the model.",
                       host)
    uvicorn.run(create_app(engine, settings), host=host, port=port, log_level=log_level)
