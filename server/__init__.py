"""Plexicorn: an HTTP/2-first ASGI server."""

from .config import Config, ConfigError
from .errors import LifespanFailure, StartupError
from .server import Server, run, serve

__version__ = "0.1.0"

__all__ = ["Config", "ConfigError", "LifespanFailure", "Server", "StartupError", "run", "serve", "__version__"]
