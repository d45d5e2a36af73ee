"""The `plexicorn` command: flags generated from Config, user mistakes as one line and exit 2."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any, NoReturn, Sequence

from .config import Config, ConfigError
from .errors import LifespanFailure, StartupError
from .logs import configure_logging
from .server import run

EXIT_USAGE = 2
EXIT_LIFESPAN = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not the whole usage block: the mistake is what the user needs to see.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def flag_name(config_field: dataclasses.Field) -> str:
    return config_field.metadata.get("flag") or "--" + config_field.name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="plexicorn",
        description="Serve an ASGI application over HTTP/2 and HTTP/1.1 (TLS with ALPN, or cleartext with h2c).",
        epilog="Development certificates: plexicorn certs {create,show,trust-help} (see plexicorn certs --help).",
        # A prefix must not stand for a flag: `--max-requests 10` once meant --max-requests-per-connection.
        allow_abbrev=False,
    )
    parser.add_argument("app", metavar="APP", help="the ASGI application, as MODULE:ATTRIBUTE (e.g. main:app)")
    parser.add_argument("--config", metavar="FILE", help="TOML file of settings (keys are the flag names "
                        "with underscores); flags given on the command line win")
    for config_field in dataclasses.fields(Config):
        meta = config_field.metadata
        names = [flag_name(config_field)] + ([meta["short"]] if meta.get("short") else [])
        options: dict[str, Any] = {"help": meta["help"], "dest": config_field.name, "default": argparse.SUPPRESS}
        default = config_field.default
        if isinstance(default, bool):
            options["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            options["action"] = "append"
        elif isinstance(default, (int, float)):
            options["type"] = str if meta.get("text") else type(default)
        if meta.get("choices"):
            options["choices"] = meta["choices"]
        if meta.get("metavar") and options.get("action") is not argparse.BooleanOptionalAction:
            options["metavar"] = meta["metavar"]
        parser.add_argument(*names, **options)
    return parser


def parse_config(argv: Sequence[str] | None = None) -> tuple[str, Config]:
    args = vars(build_parser().parse_args(argv))
    app = args.pop("app")
    config_file = args.pop("config", None)
    if "bind" in args:
        args["bind"] = tuple(args["bind"])
    if config_file:
        return app, Config.from_toml(config_file, **args)
    return app, Config(**args)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["certs"]:
        from .tls.commands import (
            certs_main,  # imported here: serving cleartext never loads cryptography
        )
        sys.exit(certs_main(argv[1:]))
    try:
        app, config = parse_config(argv)
        configure_logging(config.log_level, config.access_log)
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
