"""Logging set-up: the loggers `plexicorn.error` and `plexicorn.access`, as text or JSON lines.

`configure_logging(config)` is what the command, each worker process and `run()`/`serve()`
(unless the caller set up logging) do: one handler on `plexicorn` (stderr or
--error-log-file), access lines to the same place or to --access-log-file, formatted as text
(ISO 8601 time with its UTC offset) or JSON; or the user's own `--log-config` dictConfig.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import logging.config
import os
import sys
import time
import tomllib
from typing import Any

from .config import Config, ConfigError
from .runtime.accesslog import AccessEntry

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

_LEVELS = {"critical": logging.CRITICAL, "error": logging.ERROR, "warning": logging.WARNING,
           "info": logging.INFO, "debug": logging.DEBUG, "trace": TRACE}

_second = -1
_second_text = ("", "")


def iso_time(created: float) -> str:
    """`2026-12-02T19:21:50.123+00:00`: local time with its offset; the seconds part is
    computed once per second (the access log calls this for every request)."""
    global _second, _second_text
    second = int(created)
    if second != _second:
        local = time.localtime(second)
        offset = time.strftime("%z", local)
        _second_text = (time.strftime("%Y-%m-%dT%H:%M:%S", local), f"{offset[:3]}:{offset[3:]}")
        _second = second
    return f"{_second_text[0]}.{int((created - second) * 1000):03d}{_second_text[1]}"


class TextFormatter(logging.Formatter):
    """`TIME LEVEL message`; `pid`: each line names its process (several workers share a file)."""

    def __init__(self, pid: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)-5s " + ("[pid %(process)d] " if pid else "") + "%(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso_time(record.created)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message (exception: its traceback as
    a string); access lines add every access field (runtime/accesslog.py's FIELDS)."""

    def format(self, record: logging.LogRecord) -> str:
        access: AccessEntry | None = getattr(record, "access", None)
        data: dict[str, Any] = {"time": iso_time(record.created), "level": record.levelname,
                                "logger": record.name, "pid": record.process}
        if access is not None:
            data["message"] = f"{access.method} {access.target} HTTP/{access.http_version}"
            data.update(access.fields())
        else:
            data["message"] = record.getMessage()
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def configure_logging(config: Config, *, worker: bool = False, check: bool = False) -> None:
    """Set up Plexicorn's loggers from `config`; ConfigError (one line) for a bad file or format.

    `check` (--check-config): log files are checked (their directory writable), never created
    or opened, and a --log-config file is read and parsed but not applied (its handlers could
    create files too); lines go to stderr."""
    try:
        AccessEntry.set_format(config.access_log_format)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    access = logging.getLogger("plexicorn.access")
    if check:
        if config.log_config:
            _read_log_config(config.log_config)
        for path, flag in ((config.error_log_file, "--error-log-file"), (config.access_log_file, "--access-log-file")):
            if path is not None and path != "-":
                _check_writable(path, flag)
        config = dataclasses.replace(config, log_config=None, error_log_file=None, access_log_file=None)
    if config.log_config:
        _apply_log_config(config.log_config)
        root = logging.getLogger("plexicorn")
        if root.level == logging.NOTSET:  # the file did not say: --log-level does
            root.setLevel(_LEVELS[config.log_level])
    else:
        formatter = JSONFormatter() if config.log_format == "json" else TextFormatter(pid=worker)
        error_handler = _handler(config.error_log_file, sys.stderr, "--error-log-file", formatter)
        root = logging.getLogger("plexicorn")
        root.handlers[:] = [error_handler]
        root.setLevel(_LEVELS[config.log_level])
        root.propagate = False
        if config.access_log_file:
            access.handlers[:] = [_handler(config.access_log_file, sys.stdout, "--access-log-file", formatter)]
            access.propagate = False
        else:
            access.handlers[:] = []
            access.propagate = True
    # Access lines follow the overall level, so --log-level warning silences them too.
    access.disabled = not config.access_log


def configure_unless_configured(config: Config) -> None:
    """`run()`/`serve()`: set up logging as the command does, unless the process has handlers
    already (then only the access-log format is applied)."""
    if logging.getLogger().handlers or logging.getLogger("plexicorn").handlers:
        AccessEntry.set_format(config.access_log_format)
    else:
        configure_logging(config)


def _handler(path: str | None, dash: Any, flag: str, formatter: logging.Formatter) -> logging.Handler:
    handler: logging.Handler
    if path is None:
        handler = logging.StreamHandler(sys.stderr)
    elif path == "-":  # Hypercorn's meaning: access lines to stdout, errors to stderr
        handler = logging.StreamHandler(dash)
    else:
        try:
            # Append mode is O_APPEND: several worker processes write whole lines to one file.
            handler = logging.FileHandler(path, mode="a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{flag} {path!r}: {exc.strerror}") from None
    handler.setFormatter(formatter)
    return handler


def _check_writable(path: str, flag: str) -> None:
    """What opening `path` for appending would say, without creating (or touching) it."""
    if os.path.isdir(path):
        raise ConfigError(f"{flag} {path!r}: Is a directory")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise ConfigError(f"{flag} {path!r}: Permission denied")
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ConfigError(f"{flag} {path!r}: No such file or directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path!r}: Permission denied (cannot create a file in {directory!r})")


def _apply_log_config(path: str) -> None:
    """A `logging.config.dictConfig` from a .json or .toml file (Hypercorn's `json:`/`toml:` prefixes too)."""
    data = _read_log_config(path)
    try:
        logging.config.dictConfig(data)
    except (ValueError, TypeError, AttributeError, ImportError) as exc:
        raise ConfigError(f"--log-config {path!r}: {str(exc).splitlines()[0]}") from None


def _read_log_config(path: str) -> dict[str, Any]:
    """The dictConfig mapping of a --log-config file; ConfigError if it cannot be read or parsed."""
    kind, sep, rest = path.partition(":")
    if sep and kind in ("json", "toml"):
        path = rest + ("" if rest.endswith("." + kind) else f"#{kind}")
    elif sep and kind in ("file", "python"):
        raise ConfigError(f"--log-config {path!r}: Plexicorn reads a dictConfig in JSON or TOML (json:FILE, toml:FILE)")
    path, _, forced = path.partition("#")
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except OSError as exc:
        raise ConfigError(f"--log-config {path!r}: {exc.strerror}") from None
    try:
        if path.endswith(".toml") or forced == "toml":
            data = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "TOML" if path.endswith(".toml") or forced == "toml" else "JSON"
        raise ConfigError(f"--log-config {path!r} is not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--log-config {path!r}: expected a dictConfig mapping")
    data.setdefault("version", 1)
    # Plexicorn's loggers exist from import on: the default (True) would silence them.
    data.setdefault("disable_existing_loggers", False)
    return data
