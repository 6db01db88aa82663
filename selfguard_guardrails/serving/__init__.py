"""An OpenAI-compatible server for a guarded model (the `serve` extra: FastAPI, uvicorn,
prometheus-client): `create_app(engine, ServerSettings(...))` for any ASGI server, `run_server`
to start it with uvicorn as `selfguard serve` does, `BackgroundServer` to run it in a thread of
this process. Ray Serve (the `ray` extra) is in `serving.ray_serve`. docs/serving.md has the API."""

from .app import create_app
from .background import BackgroundServer
from .run import run_server
from .settings import ServerSettings

__all__ = ["BackgroundServer", "ServerSettings", "create_app", "run_server"]
