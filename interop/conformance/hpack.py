"""RFC 7541 HPACK: decoding errors, table size updates (RFC 9113 §4.3: COMPRESSION_ERROR)."""

from __future__ import annotations

from hyperframe.frame import (
    HeadersFrame,
)

from ..h2raw import (
    Setting,
    headers,
    hpack_string,
    indexed,
    literal_with_indexing,
    table_size_update,
)
from ..runner import CaseFailed
from .base import (
    E,
    Target,
    case,
    expect_ok,
    plain_request,
    raw_block,
    request_fields,
    seen_header,
)

# -- RFC 7541 HPACK ---------------------------------------------------------------------------------------------

def _hpack_error(t: Target, block_after_fields: bytes, *, before: bytes = b"") -> None:
    with t.open() as conn:
        conn.send(headers(1, before + raw_block(request_fields(conn)) + block_after_fields))
        conn.expect_connection_error(E.COMPRESSION_ERROR)


@case("6.1", "indexed field with index 0", "connection error COMPRESSION_ERROR", rfc="7541")
def hpack_index_zero(t: Target) -> None:
    _hpack_error(t, b"\x80")


@case("2.3.3", "indexed field beyond the static and (empty) dynamic table (index 70)",
      "connection error COMPRESSION_ERROR", rfc="7541")
def hpack_index_out_of_range(t: Target) -> None:
    _hpack_error(t, indexed(70))


@case("6.3", "dynamic table size update above SETTINGS_HEADER_TABLE_SIZE",
      "connection error COMPRESSION_ERROR", rfc="7541")
def hpack_size_update_too_large(t: Target) -> None:
    with t.open() as conn:
        limit = conn.server_settings.get(Setting.HEADER_TABLE_SIZE, 4096)
        conn.send(headers(1, table_size_update(limit + 1) + raw_block(request_fields(conn))))
        conn.expect_connection_error(E.COMPRESSION_ERROR)


@case("4.2", "dynamic table size update after a field line", "connection error COMPRESSION_ERROR", rfc="7541")
def hpack_size_update_not_first(t: Target) -> None:
    _hpack_error(t, table_size_update(0))


@case("4.2", "dynamic table size update to 0 at the start of a block", "accepted: response on stream 1", rfc="7541")
def hpack_size_update_first(t: Target) -> None:
    with t.open() as conn:
        conn.encoder.header_table_size = 0  # the encoder starts its next block with the update
        block = conn.header_block()
        if block[:1] != b"\x20":
            raise CaseFailed("a block starting with a size update", block[:4].hex())
        conn.send(headers(1, block))
        expect_ok(conn, 1)


@case("5.2", "Huffman string containing the EOS symbol", "connection error COMPRESSION_ERROR", rfc="7541")
def hpack_huffman_eos(t: Target) -> None:
    _hpack_error(t, b"\x00" + hpack_string(b"x-test") + bytes([0x80 | 4]) + b"\xff\xff\xff\xff")


@case("5.2", "Huffman string padded with more than 7 bits", "connection error COMPRESSION_ERROR", rfc="7541")
def hpack_huffman_long_padding(t: Target) -> None:
    # 'a' is 00011; then 11 bits of 1s: padding longer than 7 bits.
    _hpack_error(t, b"\x00" + hpack_string(b"x-test") + bytes([0x80 | 2]) + b"\x1f\xff")


@case("5.2", "Huffman string padded with zeros (not the EOS prefix)", "connection error COMPRESSION_ERROR", rfc="7541")
def hpack_huffman_zero_padding(t: Target) -> None:
    _hpack_error(t, b"\x00" + hpack_string(b"x-test") + bytes([0x80 | 1]) + b"\x18")


@case("5.1", "integer encoding longer than any implementation limit", "connection error COMPRESSION_ERROR", rfc="7541")
def hpack_integer_overflow(t: Target) -> None:
    _hpack_error(t, b"\xff" + b"\xff" * 10 + b"\x7f")






@case("2.3.2", "field added to the dynamic table in one block, referenced by index in the next",
      "the second request carries the field", rfc="7541")
def hpack_dynamic_table_across_blocks(t: Target) -> None:
    with t.open() as conn:
        conn.send(headers(1, plain_request(conn, b"/headers") + literal_with_indexing(b"x-dyn", b"value-1")))
        if seen_header(conn, 1, "x-dyn") != ["value-1"]:
            raise CaseFailed("x-dyn: value-1 on the first request", "missing")
        conn.send(headers(3, plain_request(conn, b"/headers") + indexed(62)))
        seen = seen_header(conn, 3, "x-dyn")
        if seen != ["value-1"]:
            raise CaseFailed("x-dyn: value-1 from dynamic index 62", f"{seen}")


@case("4.3", "reference to an entry evicted by a table size update", "connection error COMPRESSION_ERROR", rfc="7541")
def hpack_evicted_entry(t: Target) -> None:
    with t.open() as conn:
        conn.send(headers(1, plain_request(conn, b"/headers") + literal_with_indexing(b"x-dyn", b"value-1")))
        seen_header(conn, 1, "x-dyn")
        conn.send(headers(3, table_size_update(0) + plain_request(conn, b"/headers") + indexed(62)))
        conn.expect_connection_error(E.COMPRESSION_ERROR)


@case("6.2.3", "literal field never indexed", "accepted: the field reaches the app", rfc="7541")
def hpack_never_indexed(t: Target) -> None:
    with t.open() as conn:
        conn.send(headers(1, plain_request(conn, b"/headers") + b"\x10" + hpack_string(b"x-secret")
                          + hpack_string(b"s3cret")))
        if seen_header(conn, 1, "x-secret") != ["s3cret"]:
            raise CaseFailed("x-secret: s3cret", "missing")


@case("4.2", "client SETTINGS_HEADER_TABLE_SIZE = 0", "the server's next field block starts with a size update to 0",
      rfc="7541")
def hpack_server_honours_table_size(t: Target) -> None:
    with t.open({Setting.HEADER_TABLE_SIZE: 0}) as conn:
        conn.decoder.max_allowed_table_size = 0
        conn.request(1)
        expect_ok(conn, 1)
        first = next(f for f in conn.frames if isinstance(f, HeadersFrame) and f.stream_id == 1)
        block = first.block  # type: ignore[attr-defined]
        if not block or block[0] != 0x20:
            raise CaseFailed("a block starting with 0x20 (size update to 0)", block[:4].hex())
