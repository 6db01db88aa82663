"""An OpenAI-compatible server for a guarded model (the `serve` extra: FastAPI, uvicorn,
prometheus-client): `create_app(engine, ServerSettings(...))` for any ASGI server, `run_server`
to start it with uvicorn, as `selfguard serve` does. docs/serving.md has the API."""

from .app import create_app
from .run import run_server
from .settings import ServerSettings

__all__ = ["ServerSettings", "create_app", "run_server"]
