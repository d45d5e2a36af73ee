"""Turn `module:attribute` into an ASGI application, with one-line errors."""

from __future__ import annotations

import importlib
import inspect
import sys
import traceback
from pathlib import Path
from typing import Any

from .errors import StartupError


def load_app(spec: str, *, app_dir: str = ".", factory: bool = False) -> Any:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise StartupError(f"APP must be MODULE:ATTRIBUTE (e.g. myproject.main:app), got {spec!r}")
    directory = str(Path(app_dir).resolve())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise StartupError(f"cannot import module {module_name!r}: no such module "
                               f"(looked in {app_dir!r}; set --app-dir?)") from None
        raise StartupError(_describe(f"importing {module_name!r} failed", exc)) from None
    except Exception as exc:
        raise StartupError(_describe(f"importing {module_name!r} failed", exc)) from None
    app: Any = module
    for part in attribute.split("."):
        try:
            app = getattr(app, part)
        except AttributeError:
            raise StartupError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if factory:
        try:
            app = app()
        except Exception as exc:
            raise StartupError(_describe(f"app factory {spec!r} failed", exc)) from None
    if not callable(app):
        raise StartupError(f"{spec!r} is not callable; did you mean to pass --factory?"
                           if not factory else f"factory {spec!r} did not return a callable")
    if inspect.isclass(app) and not factory:
        raise StartupError(f"{spec!r} is a class; pass --factory if it builds the app")
    if not _accepts_asgi_call(app):
        # Typically an app factory given without --factory: caught here rather than as a 500 per request.
        what = f"factory {spec!r} returned a {type(app).__name__} that" if factory else f"{spec!r}"
        hint = "" if factory else "; pass --factory if it builds the app"
        raise StartupError(f"{what} cannot be called with (scope, receive, send){hint}")
    return app


def _accepts_asgi_call(app: Any) -> bool:
    """False only when the signature is known and cannot take three positional arguments."""
    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):
        return True  # no signature to check (some builtins and C extensions)
    try:
        signature.bind(None, None, None)
    except TypeError:
        return False
    return True


def _describe(what: str, exc: BaseException) -> str:
    """`what: Type: message (file:line)`, naming where in the user's code it happened."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" ({exc.filename}:{exc.lineno})"
    elif frames:
        where = f" ({frames[-1].filename}:{frames[-1].lineno})"
    return f"{what}: {type(exc).__name__}: {exc}{where}"
