"""Which HTTP/1.1 codec a connection gets (`--http1-parser`): one factory per setting, made once."""

from __future__ import annotations

import functools
from typing import Callable

from .codec import HTTP1Codec
from .h11codec import H11Codec


def httptools_available() -> bool:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_parser(name: str) -> str:
    """`--http1-parser`'s value as the parser to use: auto is httptools when it is installed, else
    our pure-Python one."""
    if name == "auto":
        return "httptools" if httptools_available() else "python"
    return name  # an explicit httptools without it installed is refused by Config


@functools.lru_cache(maxsize=None)
def codec_factory(setting: str, max_head_size: int) -> Callable[[], HTTP1Codec]:
    """A no-argument callable making one connection's codec, for `--http1-parser`'s value."""
    parser = resolve_parser(setting)
    if parser == "httptools":
        from .llhttpcodec import HttptoolsCodec
        return lambda: HttptoolsCodec(max_head_size, H11Codec)
    if parser == "python":
        from .pycodec import PythonCodec
        return lambda: PythonCodec(max_head_size, H11Codec)
    return lambda: H11Codec(max_head_size)
