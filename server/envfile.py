"""`--env-file`: a dotenv file loaded into os.environ before the app is imported (uvicorn's flag).

The dotenv syntax python-dotenv reads (uvicorn's --env-file uses it): `KEY=value`, `export
KEY=value`, `# comments`; values in single quotes (only \\' and \\\\ are escapes) or double quotes
(\\n, \\t, \\r, \\", \\\\ ...), either of which may span several lines; an unquoted value ends at
` #`. Then, as python-dotenv does for every value (single-quoted ones too), `${VAR}` and
`${VAR:-default}` become the variable from the environment, else from an earlier line of the
file, else the default (or nothing). Variables already in the environment win, as with
python-dotenv's default (no override).
"""

from __future__ import annotations

import os
import re
from typing import Mapping

from .config import ConfigError

# KEY= at the start of an entry; the value follows (blanks around `=` allowed, not line breaks).
_KEY = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_.]*)[ \t]*=[ \t]*")
# What may follow a closing quote on its line: blanks, then a comment.
_AFTER_QUOTE = re.compile(r"[ \t]*(?:#[^\r\n]*)?\r?(?:\n|$)")
_DOUBLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "\\": "\\", "a": "\a", "b": "\b",
                   "f": "\f", "v": "\v"}
_SINGLE_ESCAPES = {"'": "'", "\\": "\\"}
_VARIABLE = re.compile(r"\$\{([^}:]*)(?::-([^}]*))?\}")


def parse_env_file(text: str, source: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The file's variables, `${VAR}` expanded against `environ` (default os.environ) first,
    then the file's earlier lines; ConfigError naming the line of the first mistake."""
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    position, length = 0, len(text)
    while position < length:
        line_end = text.find("\n", position)
        line_end = length if line_end < 0 else line_end
        line = text[position:line_end]
        if not line.strip() or line.lstrip().startswith("#"):
            position = line_end + 1
            continue
        match = _KEY.match(text, position, line_end)
        if match is None:
            raise ConfigError(f"--env-file {source!r} line {_line(text, position)}: expected KEY=VALUE")
        key, start = match.group(1), match.end()
        quote = text[start:start + 1]
        if quote in ("'", '"'):
            end = _closing_quote(text, start, quote)
            if end < 0:
                raise ConfigError(f"--env-file {source!r} line {_line(text, position)}: unterminated {quote} quote")
            after = _AFTER_QUOTE.match(text, end + 1)
            if after is None:
                raise ConfigError(f"--env-file {source!r} line {_line(text, position)}: "
                                  f"text after the closing {quote} quote")
            raw, position = text[start + 1:end], after.end()
            escapes = _DOUBLE_ESCAPES if quote == '"' else _SINGLE_ESCAPES
            value = re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), "\\" + m.group(1)), raw, flags=re.S)
        else:
            value = text[start:line_end].split(" #", 1)[0].rstrip()
            position = line_end + 1
        values[key] = _expand(value, environ, values)
    return values


def _line(text: str, position: int) -> int:
    """The line number of `position`, counted only for an error message (per entry, a file of
    many lines would be counted over and over)."""
    return text.count("\n", 0, position) + 1


def _expand(value: str, environ: Mapping[str, str], earlier: dict[str, str]) -> str:
    if "${" not in value:
        return value

    def variable(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = environ.get(name, earlier.get(name))
        # A variable set to "" stays empty: python-dotenv's `:-` takes the default only when unset.
        return found if found is not None else (default or "")
    return _VARIABLE.sub(variable, value)


def _closing_quote(text: str, start: int, quote: str) -> int:
    """Index of the quote closing the one at `start` (a backslash escapes the next character)."""
    index = start + 1
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text[index] == quote:
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
