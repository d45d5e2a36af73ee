"""RFC 9113 §6.9 WINDOW_UPDATE and flow control."""

from __future__ import annotations

from ..h2raw import (
    FrameType,
    Setting,
    data,
    raw_frame,
    settings,
    window_update,
)
from ..runner import CaseFailed
from .base import (
    MAX_WINDOW,
    E,
    Target,
    case,
    connection_error,
    data_on,
    exactly_this_much_data,
    no_data_after_headers,
)

# -- 6.9 WINDOW_UPDATE and flow control ------------------------------------------------------------------------

@case("6.9", "WINDOW_UPDATE of 0 on the connection", "connection error PROTOCOL_ERROR")
def window_update_zero_connection(t: Target) -> None:
    connection_error(t, window_update(0, 0), E.PROTOCOL_ERROR)


@case("6.9", "WINDOW_UPDATE of 0 on an open stream", "stream error PROTOCOL_ERROR (or connection error)")
def window_update_zero_stream(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/stall")
        conn.send(window_update(1, 0))
        conn.expect_stream_error(1, E.PROTOCOL_ERROR, connection_error_ok=True)


@case("6.9", "WINDOW_UPDATE of 3 octets", "connection error FRAME_SIZE_ERROR")
def window_update_bad_length(t: Target) -> None:
    connection_error(t, raw_frame(FrameType.WINDOW_UPDATE, 0, 0, b"\0\0\x01"), E.FRAME_SIZE_ERROR)


@case("6.9.1", "WINDOW_UPDATE taking the connection window over 2^31-1", "connection error FLOW_CONTROL_ERROR")
def connection_window_overflow(t: Target) -> None:
    connection_error(t, window_update(0, MAX_WINDOW), E.FLOW_CONTROL_ERROR)


@case("6.9.1", "WINDOW_UPDATE taking a stream window over 2^31-1",
      "stream error FLOW_CONTROL_ERROR (or connection error)")
def stream_window_overflow(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/stall")
        conn.send(window_update(1, MAX_WINDOW))
        conn.expect_stream_error(1, E.FLOW_CONTROL_ERROR, connection_error_ok=True)


@case("6.9.2", "SETTINGS_INITIAL_WINDOW_SIZE change taking an open stream's window over 2^31-1",
      "connection error FLOW_CONTROL_ERROR")
def settings_window_overflow(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/stall")
        conn.send(window_update(1, MAX_WINDOW - 65535), settings({Setting.INITIAL_WINDOW_SIZE: 65536}))
        conn.expect_connection_error(E.FLOW_CONTROL_ERROR)


@case("6.9.1", "client SETTINGS_INITIAL_WINDOW_SIZE = 1, GET of 100 bytes",
      "one DATA octet, nothing more until WINDOW_UPDATE, then the other 99")
def server_respects_stream_window(t: Target) -> None:
    with t.open({Setting.INITIAL_WINDOW_SIZE: 1}) as conn:
        conn.request(1, b"/bytes?n=100")
        exactly_this_much_data(conn, 1, 1, "a 1-octet stream window")
        conn.send(window_update(1, 99))
        response = conn.read_response(1, auto_window=False)
        if len(response.body) != 100:
            raise CaseFailed("100 octets after WINDOW_UPDATE", f"{len(response.body)}")


@case("6.9.1", "connection window left at 65535, GET of 70000 bytes",
      "exactly 65535 octets, the rest after a connection WINDOW_UPDATE")
def server_respects_connection_window(t: Target) -> None:
    with t.open({Setting.INITIAL_WINDOW_SIZE: 1 << 20}) as conn:
        conn.request(1, b"/bytes?n=70000")
        exactly_this_much_data(conn, 1, 65535, "the connection window")
        conn.send(window_update(0, 70000 - 65535))
        response = conn.read_response(1, auto_window=False)
        if len(response.body) != 70000:
            raise CaseFailed("70000 octets after WINDOW_UPDATE", f"{len(response.body)}")


@case("6.9.2", "SETTINGS_INITIAL_WINDOW_SIZE lowered below what was sent (negative window)",
      "no DATA while the window is negative; exactly the positive part after WINDOW_UPDATEs")
def negative_window(t: Target) -> None:
    with t.open({Setting.INITIAL_WINDOW_SIZE: 10000}) as conn:
        conn.send(window_update(0, 1 << 20))
        conn.request(1, b"/bytes?n=50000")
        exactly_this_much_data(conn, 1, 10000, "a 10000-octet stream window")
        # The window becomes 6000 - 10000 = -4000.
        conn.send(settings({Setting.INITIAL_WINDOW_SIZE: 6000}))
        mark = len(conn.frames)
        conn.send(window_update(1, 3000))  # -1000: still nothing may be sent
        conn.expect_alive()
        if data_on(conn, 1, mark):
            raise CaseFailed("no DATA while the stream window is -1000", f"{data_on(conn, 1, mark)} octets")
        conn.send(window_update(1, 1500))  # +500
        exactly_this_much_data(conn, 1, 500, "a stream window back at +500", mark)


@case("6.9.2", "client SETTINGS_INITIAL_WINDOW_SIZE = 0 then raised to 100 with a request waiting",
      "no DATA at 0; the 10-octet body once the setting grows the open stream's window")
def window_grown_by_settings(t: Target) -> None:
    with t.open({Setting.INITIAL_WINDOW_SIZE: 0}) as conn:
        conn.request(1, b"/bytes?n=10")
        no_data_after_headers(conn, 1, "a 0 stream window")
        conn.send(settings({Setting.INITIAL_WINDOW_SIZE: 100}))
        response = conn.read_response(1, auto_window=False)
        if len(response.body) != 10:
            raise CaseFailed("10 octets", f"{len(response.body)}")


@case("6.9.1", "client sends more DATA than the stream window the server advertised",
      "FLOW_CONTROL_ERROR (stream or connection error)")
def client_exceeds_window(t: Target) -> None:
    with t.open() as conn:
        window = conn.server_settings.get(Setting.INITIAL_WINDOW_SIZE, 65535)
        frame_size = conn.server_settings.get(Setting.MAX_FRAME_SIZE, 16384)
        conn.request(1, b"/sink", method=b"POST", end_stream=False)
        chunks, left = [], window + frame_size
        while left > 0:
            chunks.append(data(1, b"x" * min(frame_size, left)))
            left -= frame_size
        conn.send(*chunks)
        conn.expect_stream_error(1, E.FLOW_CONTROL_ERROR, connection_error_ok=True)


@case("4.2", "response larger than SETTINGS_MAX_FRAME_SIZE", "every DATA frame within 16384 octets")
def server_respects_frame_size(t: Target) -> None:
    with t.open() as conn:
        conn.request(1, b"/bytes?n=60000")
        response = conn.read_response(1)
        if len(response.body) != 60000 or max(response.data_frames) > 16384:
            raise CaseFailed("60000 octets in frames of at most 16384",
                             f"{len(response.body)} octets, largest frame {max(response.data_frames)}")
