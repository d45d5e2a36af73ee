"""Turn `module:attribute` into an application, and tell which interface it speaks, with one-line errors."""

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
    return app


# What each interface's call takes, for the one-line messages.
_CALLS = {"asgi3": "(scope, receive, send)", "asgi2": "(scope)", "wsgi": "(environ, start_response)"}


def detect_interface(app: Any, requested: str = "auto", *, name: str | None = None,
                     factory: bool = False) -> str:
    """`asgi3`, `asgi2` or `wsgi`: what `app` is, told apart by how it can be called.

    ASGI 3: a coroutine function (or object whose `__call__` is one) taking three arguments, or a
    plain callable that takes exactly three. ASGI 2: a class whose instances are built from the
    scope and called with (receive, send), or a callable taking exactly one argument. WSGI: a
    callable that is not a coroutine function and takes exactly two (Flask, Django's WSGIHandler,
    Falcon, Pyramid). Anything else, or a signature that fits several, is one StartupError line.
    """
    label = f"{name!r}" if name else "the app"
    if factory:
        label = f"the app built by factory {name!r}" if name else "the app built by the factory"
    found = _arity(app)
    described = _describe_callable(app, found)
    if requested != "auto":
        fits = {"asgi3": 3, "asgi2": 1, "wsgi": 2}[requested]
        if found is not None and fits not in found and not (requested == "asgi2" and inspect.isclass(app)):
            raise StartupError(f"{label} is {described}: it cannot be called as --interface {requested} "
                               f"{_CALLS[requested]}")
        return requested
    if inspect.isclass(app):
        if found == {1} and _is_coroutine_callable(getattr(app, "__call__", None)):
            return "asgi2"
        if found == {2} and hasattr(app, "__iter__"):
            return "wsgi"  # PEP 3333's own example: the class is the app, its instance the iterable
        hint = "; pass --factory if it builds the app" if not factory else ""
        raise StartupError(f"{label} is {described}, not an ASGI or WSGI app{hint}")
    if _is_coroutine_callable(app):
        if found is None or 3 in found:
            return "asgi3"
    elif found is not None and len(found) == 1:
        kind = {3: "asgi3", 2: "wsgi", 1: "asgi2"}.get(next(iter(found)))
        if kind is not None:
            return kind
    if found is None:
        raise StartupError(f"cannot tell what {label} is ({described}, no signature to read); "
                           "pass --interface asgi3, asgi2 or wsgi")
    if len(found & {1, 2, 3}) > 1:
        raise StartupError(f"{label} is {described}, which fits several interfaces; "
                           "pass --interface asgi3, asgi2 or wsgi")
    hint = "; pass --factory if it builds the app" if not factory else ""
    raise StartupError(f"{label} is {described}: not an ASGI 3 app {_CALLS['asgi3']}, an ASGI 2 app "
                       f"{_CALLS['asgi2']} nor a WSGI app {_CALLS['wsgi']}{hint}")


def _arity(app: Any) -> set[int] | None:
    """How many positional arguments (0 to 3) a call of `app` can take; None: no signature."""
    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):
        return None  # some builtins and C extensions
    counts = set()
    for count in range(4):
        try:
            signature.bind(*([None] * count))
        except TypeError:
            continue
        counts.add(count)
    return counts


def _is_coroutine_callable(app: Any) -> bool:
    if app is None:
        return False
    if inspect.iscoroutinefunction(app):
        return True
    call = getattr(app, "__call__", None)
    return not inspect.isfunction(app) and not inspect.ismethod(app) and inspect.iscoroutinefunction(call)


def _describe_callable(app: Any, counts: set[int] | None) -> str:
    kind = ("a class" if inspect.isclass(app) else "a coroutine function" if _is_coroutine_callable(app)
            else "a function" if inspect.isfunction(app) or inspect.ismethod(app) else f"a {type(app).__name__}")
    if counts is None:
        return kind
    try:
        params = ", ".join(str(p) for p in inspect.signature(app).parameters.values())
    except (TypeError, ValueError):
        params = "?"
    return f"{kind} taking ({params})"


def _describe(what: str, exc: BaseException) -> str:
    """`what: Type: message (file:line)`, naming where in the user's code it happened."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" ({exc.filename}:{exc.lineno})"
    elif frames:
        where = f" ({frames[-1].filename}:{frames[-1].lineno})"
    return f"{what}: {type(exc).__name__}: {exc}{where}"
