"""nghttp (nghttp2's client): `/page` fetched 50 times in parallel (-m 50) with its 50
subresources (-a), over TLS and h2c; the SETTINGS the server sends, and every stream completing."""

from __future__ import annotations

import re
from collections.abc import Callable

from ..app import PAGE_RESOURCES
from ..runner import (
    CaseFailed,
    CaseResult,
    Environment,
    Options,
    SuiteSkipped,
    find_tool,
    run_case,
)
from ..servers import PlexicornProcess
from ._tools import run_tool

NAME = "nghttp"
HINT = "install nghttp2's client tools (Debian/Ubuntu: apt-get install nghttp2-client; macOS: brew install nghttp2)"
PARALLEL = 50

# One row of `nghttp -s` statistics: id, responseEnd, requestStart, process, code, size, path.
_STAT_ROW = re.compile(r"^\s*(\d+)\s+\+\S+\s+\+\S+\s+\S+\s+(\d{3})\s+\S+\s+(\S+)\s*$", re.MULTILINE)
# The first SETTINGS frame received (the server's preface), with its values.
_SERVER_SETTINGS = re.compile(r"recv SETTINGS frame <length=\d+, flags=0x00, stream_id=0>\n((?:\s+[\[(].*\n)+)")
_SETTING = re.compile(r"\[(\w+)\((0x[0-9a-f]+)\):(\d+)\]")


def run(env: Environment, options: Options) -> list[CaseResult]:
    nghttp = find_tool("nghttp", "NGHTTP")
    if nghttp is None:
        raise SuiteSkipped(HINT)
    results = []
    for label, server in (("TLS", env.tls_server), ("h2c", env.h2c_server)):
        output: dict[str, str] = {}

        def fetch(server: PlexicornProcess = server, output: dict[str, str] = output) -> None:
            # -n: discard bodies, -v: frames, -a: fetch the page's assets, -s: per-request statistics.
            done = run_tool([nghttp, "-nvas", "-m", str(PARALLEL), server.url + "/page"], timeout=60)
            output["text"] = done.stdout.decode("utf-8", "replace")

        def every_stream_completes(output: dict[str, str] = output) -> None:
            text = _need(output)
            rows = _STAT_ROW.findall(text)
            expected = PARALLEL * (1 + PAGE_RESOURCES)
            ok = [row for row in rows if row[1] == "200"]
            paths = {row[2] for row in ok}
            wanted = {"/page"} | {f"/res/{n}.svg" for n in range(PAGE_RESOURCES)}
            if len(ok) != expected or paths != wanted:
                raise CaseFailed(f"{expected} responses with 200 for /page and its {PAGE_RESOURCES} resources",
                                 f"{len(ok)} of {len(rows)} with 200, missing {sorted(wanted - paths)[:5]}")
            errors = re.findall(r"recv (RST_STREAM|GOAWAY) frame", text)
            if errors:
                raise CaseFailed("no RST_STREAM or GOAWAY from the server", f"{len(errors)}: {errors[:3]}")

        def setting(name: str, code: int, value: int, output: dict[str, str] = output) -> Callable[[], None]:
            def verify() -> None:
                match = _SERVER_SETTINGS.search(_need(output))
                if not match:
                    raise CaseFailed("the server's SETTINGS frame in nghttp -v", "none found")
                values = {int(hex_code, 16): int(v) for _, hex_code, v in _SETTING.findall(match.group(1))}
                if values.get(code) != value:
                    raise CaseFailed(f"{name} (0x{code:02x}) = {value}", f"settings {values}")
            return verify

        cases: list[tuple[str, Callable[[], object]]] = [
            (f"{label}: nghttp -nas -m {PARALLEL} /page runs ({PARALLEL} pages and their assets in parallel)", fetch),
            (f"{label}: all {PARALLEL * (1 + PAGE_RESOURCES)} streams complete with 200, no RST_STREAM or GOAWAY",
             every_stream_completes),
            (f"{label}: server SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441 §3)",
             setting("SETTINGS_ENABLE_CONNECT_PROTOCOL", 0x8, 1)),
            (f"{label}: server SETTINGS_NO_RFC7540_PRIORITIES = 1 (RFC 9218 §2.1)",
             setting("SETTINGS_NO_RFC7540_PRIORITIES", 0x9, 1)),
        ]
        chosen = [(name, check) for name, check in cases[1:] if options.selects(name)]
        if chosen:  # the checks read the output of the first case, so it always runs with them
            results += [run_case(name, check) for name, check in cases[:1] + chosen]
    return results


def _need(output: dict[str, str]) -> str:
    if "text" not in output:
        raise CaseFailed("nghttp's output", "nghttp did not run (see the case before)")
    return output["text"]
