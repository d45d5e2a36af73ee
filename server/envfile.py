"""`--env-file`: a dotenv file loaded into os.environ before the app is imported (uvicorn's flag).

The usual dotenv lines: `KEY=value`, `export KEY=value`, `# comments`, values in single quotes
(taken as they are) or double quotes (with \\n, \\t, \\" and \\\\ escapes); an unquoted value ends
at ` #`. Variables already in the environment win, as with python-dotenv's default.
"""

from __future__ import annotations

import os
import re

from .config import ConfigError

_LINE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*?)\s*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def parse_env_file(text: str, source: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise ConfigError(f"--env-file {source!r} line {number}: expected KEY=VALUE")
        key, value = match.groups()
        if value[:1] in ("'", '"'):
            quote = value[0]
            end = _closing_quote(value, quote)
            if end < 0:
                raise ConfigError(f"--env-file {source!r} line {number}: unterminated {quote} quote")
            inner = value[1:end]
            if quote == '"':
                inner = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), inner)
            value = inner
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def _closing_quote(value: str, quote: str) -> int:
    index = 1
    while index < len(value):
        if value[index] == "\\" and quote == '"':
            index += 2
            continue
        if value[index] == quote:
            return index
        index += 1
    return -1


def load_env_file(path: str) -> None:
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--env-file {path!r}: {getattr(exc, 'strerror', None) or exc}") from None
    for key, value in parse_env_file(text, path).items():
        os.environ.setdefault(key, value)
