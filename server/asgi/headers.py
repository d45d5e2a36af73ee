"""The head of every response the server sends, built in one place.

App responses (`HTTPCycle.send`), the server's own 500s (`HTTPCycle.fail`) and the answers the
server makes without an app (HTTP/1.1 400/431/505, WebSocket handshake refusals) all pass
through `response_head`, so the fields the server adds are added the same way everywhere:

    response_head(headers, *, date, defaults=()) -> headers
        `headers`: the response's own fields, names lower-case (an app's pass `_header_list`
        first); completed in place and returned.
        `date`: the `date` value (`ServerContext.date_header()`), put first unless the response
        has its own `date`; None leaves `date` to the caller.
        `defaults`: fields of the connection (`ConnectionInfo.response_headers`: HSTS on TLS),
        each appended unless the response has a field of that name (an app's own wins).

    plain_response(status, reason, *, date, defaults=(), extra=()) -> (headers, body)
        A server-made text/plain answer, `<phrase>: <reason>` (or the phrase alone), whose
        head went through `response_head`; `extra` fields (e.g. `sec-websocket-version`) first.

HTTP/2 passes `:status` separately: call `response_head` on the regular fields only. A field
every response should carry (`server`, `alt-svc`) goes into `defaults` where they are made, or
here if it depends on the response.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Sequence

Header = tuple[bytes, bytes]

# Reason phrases, computed once (HTTP/1.1 status lines, plain answers).
REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


def response_head(headers: list[Header], *, date: bytes | None,
                  defaults: Sequence[Header] = ()) -> list[Header]:
    if defaults or date is not None:
        present = dict(headers)  # the names, looked up (built in C: this runs for every response)
        for header in defaults:
            if header[0] not in present:
                headers.append(header)
        if date is not None and b"date" not in present:
            headers.insert(0, (b"date", date))
    return headers


def plain_response(status: int, reason: str = "", *, date: bytes | None, defaults: Sequence[Header] = (),
                   extra: Sequence[Header] = ()) -> tuple[list[Header], bytes]:
    phrase = REASONS.get(status, b"Error")
    body = (phrase + b": " + reason.encode("utf-8", "replace") if reason else phrase) + b"\n"
    headers = [*extra, (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body))]
    return response_head(headers, date=date, defaults=defaults), body
