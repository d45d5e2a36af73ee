"""The `plexicorn` command: flags generated from Config, user mistakes as one line and exit 2.

Peer servers' flags (peerflags.py) are accepted under their own names where they mean the same
thing, and refused with the Plexicorn way to say it where they do not.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any, Callable, NoReturn, Sequence

from .config import Config, ConfigError
from .errors import LifespanFailure, StartupError
from .logs import configure_logging
from .peerflags import REFUSED, REFUSED_VALUES, RENAMED, WORKER_CLASSES
from .server import run

EXIT_USAGE = 2
EXIT_LIFESPAN = 3

# uvicorn's defaults for the half of a --host/--port pair that is not given.
DEFAULT_HOST = "127.0.0.1"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not the whole usage block: the mistake is what the user needs to see.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Refused(argparse.Action):
    """A peer server's flag Plexicorn does not have: one line saying what to type instead."""

    def __init__(self, option_strings: list[str], dest: str, hint: str = "", **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs="?", help=argparse.SUPPRESS, default=argparse.SUPPRESS)
        self.hint = hint

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        parser.error(f"{option_string}: {self.hint}")


def flag_name(config_field: dataclasses.Field) -> str:
    return config_field.metadata.get("flag") or "--" + config_field.name.replace("_", "-")


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version
    try:
        return package_version("plexicorn")
    except PackageNotFoundError:  # run from a source tree that is not installed
        from . import __version__
        return __version__


def _shown(default: Any) -> str:
    if isinstance(default, bool):
        return "on" if default else "off"
    if default is None or default == () or default == "":
        return "none"
    if isinstance(default, tuple):
        return ", ".join(default)
    return str(default)


def _value_type(name: str, convert: Callable[[str], Any]) -> Callable[[str], Any]:
    refused = REFUSED_VALUES.get(name, {})

    def check(text: str) -> Any:
        if text in refused:
            raise argparse.ArgumentTypeError(f"{text!r}: {refused[text]}")
        return convert(text)
    check.__name__ = convert.__name__  # argparse names the type in its "invalid value" message
    return check


def _fd(text: str) -> int:
    if not (text.isascii() and text.strip().isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a file descriptor, a number from 0 "
                                         "(fd://NAME with --bind for a systemd socket's name)")
    return int(text)


def _worker_class(text: str) -> str:
    if text not in WORKER_CLASSES:
        raise argparse.ArgumentTypeError(f"{text!r}: Plexicorn runs on asyncio; use -k uvloop or "
                                         "-k asyncio (or --loop)")
    return WORKER_CLASSES[text]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="plexicorn",
        description="Serve an ASGI application over HTTP/2 and HTTP/1.1 (TLS with ALPN, or cleartext with h2c).",
        epilog="Development certificates: plexicorn certs {create,show,trust-help} (see plexicorn certs --help). "
        "uvicorn's --host/--port, --uds, --fd, --ssl-*, --timeout-*, --env-file and Hypercorn's "
        "--access-logfile, --error-logfile, --access-logformat, -c, -k are accepted too (README: Migrating).",
        # A prefix must not stand for a flag: `--max-requests 10` once meant --max-requests-per-connection.
        allow_abbrev=False,
    )
    parser.add_argument("app", metavar="APP", help="the ASGI application, as MODULE:ATTRIBUTE (e.g. main:app)")
    parser.add_argument("-V", "--version", action="version", version=f"plexicorn {version()}")
    parser.add_argument("-c", "--config", metavar="FILE", help="TOML file of settings (keys are the flag names "
                        "with underscores); flags given on the command line win")
    parser.add_argument("--check-config", action="store_true", help="check the settings, load the "
                        "certificates and import the app, then exit (0 if all is well) without serving")
    aliases: dict[str, list[str]] = {}
    for peer, ours in RENAMED.items():
        aliases.setdefault(ours, []).append(peer)
    for config_field in dataclasses.fields(Config):
        meta = config_field.metadata
        flag = flag_name(config_field)
        names = [flag] + ([meta["short"]] if meta.get("short") else []) + aliases.get(flag, [])
        default = config_field.default
        shown = "" if "Default " in meta["help"] else f" (default: {_shown(default)})"
        help_text = (meta["help"] + shown).replace("%", "%%")
        options: dict[str, Any] = {"help": help_text, "dest": config_field.name, "default": argparse.SUPPRESS}
        if isinstance(default, bool):
            options["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            options["action"] = "append"
        elif isinstance(default, (int, float)):
            options["type"] = str if meta.get("text") else type(default)
        if config_field.name == "log_level":
            options["type"] = str.lower  # --log-level INFO, as uvicorn and Hypercorn take it
        if config_field.name in REFUSED_VALUES:
            options["type"] = _value_type(config_field.name, options.get("type", str))
        if meta.get("choices"):
            options["choices"] = meta["choices"]
        if meta.get("metavar") and options.get("action") is not argparse.BooleanOptionalAction:
            options["metavar"] = meta["metavar"]
        parser.add_argument(*names, **options)
    peers = parser.add_argument_group("flags of other servers (README: Migrating from uvicorn / Hypercorn)")
    peers.add_argument("--host", help="uvicorn: with --port, one --bind HOST:PORT "
                       f"(default port 8000, 8443 with TLS; default host {DEFAULT_HOST})", default=argparse.SUPPRESS)
    peers.add_argument("--port", type=int, help="uvicorn: see --host", default=argparse.SUPPRESS)
    peers.add_argument("--uds", metavar="PATH", action="append", help="uvicorn: --bind unix:PATH",
                       default=argparse.SUPPRESS)
    peers.add_argument("--fd", metavar="N", action="append", type=_fd, default=argparse.SUPPRESS,
                       help="uvicorn: --bind fd://N (--fd wins over --uds, which wins over --host/--port)")
    peers.add_argument("-k", "--worker-class", dest="loop", type=_worker_class, metavar="uvloop|asyncio",
                       help="Hypercorn: --loop", default=argparse.SUPPRESS)
    peers.add_argument("--env-file", metavar="FILE", default=argparse.SUPPRESS,
                       help="uvicorn: KEY=VALUE lines put into the environment before the app is imported "
                       "(variables already set win)")
    for peer, hint in REFUSED.items():
        parser.add_argument(peer, action=_Refused, hint=hint)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> tuple[str, Config, bool]:
    """(APP, its Config, whether --check-config was given); loads --env-file."""
    args = vars(build_parser().parse_args(argv))
    app = args.pop("app")
    config_file = args.pop("config", None)
    check = args.pop("check_config")
    binds = list(args.pop("bind", ()))
    uds, fds = args.pop("uds", ()), args.pop("fd", ())
    host, port = args.pop("host", None), args.pop("port", None)
    # uvicorn serves one of its addresses: --fd, else --uds, else --host/--port (its Server.startup);
    # the others are ignored, not bound beside it. --bind entries are Plexicorn's own and all bound.
    if fds:
        binds += [f"fd://{fd}" for fd in fds]
        uds, host, port = (), None, None
    elif uds:
        binds += [f"unix:{path}" for path in uds]
        host, port = None, None
    env_file = args.pop("env_file", None)
    if env_file is not None:
        from .envfile import load_env_file
        load_env_file(env_file)
    if binds or host is not None or port is not None:
        args["bind"] = tuple(binds)
    if host is not None or port is not None:
        # The pair becomes one bind once we know whether TLS is on (its default port).
        args["bind"] += (_join(host or DEFAULT_HOST, port),)
    # Hypercorn's python:MODULE / file:PATH, Gunicorn's gunicorn.conf.py.
    if config_file and (config_file.startswith(("python:", "file:")) or config_file.endswith(".py")):
        raise ConfigError(f"--config {config_file!r}: Plexicorn reads a TOML file of its own settings "
                          "(keys are the flag names with underscores), not Python")
    if config_file:
        config = Config.from_toml(config_file, **args)
    else:
        config = Config(**args)
    if port is None and host is not None:
        tls_port = 8443 if config.tls else 8000
        config = dataclasses.replace(config, bind=config.bind[:-1] + (_join(host, tls_port),))
    return app, config, check


def _join(host: str, port: int | None) -> str:
    port = 8000 if port is None else port
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def parse_config(argv: Sequence[str] | None = None) -> tuple[str, Config]:
    app, config, _ = parse_args(argv)
    return app, config


def check_config(app: str, config: Config) -> None:
    """--check-config: everything start-up does before binding a socket; raises on the first problem."""
    from .importer import load_app
    from .server import build_tls
    if config.metrics_bind is not None:
        # As start-up: without prometheus_client (plexicorn[metrics]), one ConfigError line.
        from .observe import exposition  # noqa: F401
    build_tls(config)
    load_app(app, app_dir=config.app_dir, factory=config.factory)
    print(f"plexicorn: configuration OK: {app}, {', '.join(str(bind) for bind in config.binds)}"
          f"{', TLS' if config.tls else ''}")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["certs"]:
        from .tls.commands import (
            certs_main,  # imported here: serving cleartext never loads cryptography
        )
        sys.exit(certs_main(argv[1:]))
    try:
        app, config, check = parse_args(argv)
        configure_logging(config, check=check)
        if check:
            check_config(app, config)
        else:
            run(app, config)
    except (ConfigError, StartupError) as exc:
        _exit(EXIT_USAGE, str(exc))
    except LifespanFailure as exc:
        _exit(EXIT_LIFESPAN, str(exc))
    except KeyboardInterrupt:
        pass
    sys.exit(0)


def _exit(status: int, message: str) -> NoReturn:
    print(f"plexicorn: error: {message}", file=sys.stderr)
    sys.exit(status)
