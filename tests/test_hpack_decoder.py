"""Our HPACK decoder (http2/hpackdec.py) against hpack's own, which it must match exactly:
the same fields (and their types), the same dynamic table, and the same error for every
block, valid or corrupted, with small header list limits and table size updates."""

from __future__ import annotations

import random

import pytest
from hpack import Decoder, Encoder, NeverIndexedHeaderTuple

from plexicorn.http2.hpackdec import RequestDecoder

NAMES = [b":method", b":path", b":scheme", b":authority", b"user-agent", b"accept", b"cookie", b"x-a", b"x-" * 80]


def outcome(decoder: Decoder, block: bytes) -> tuple:
    try:
        fields = decoder.decode(block, raw=True)
    except Exception as exc:  # noqa: BLE001 - which exception is what is compared
        return ("error", type(exc))
    return ("ok", [(type(field), tuple(field)) for field in fields])


@pytest.mark.parametrize("seed", range(6))
def test_decodes_as_hpack_does(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(60):
        encoder, reference, ours = Encoder(), Decoder(), RequestDecoder()
        limit = rng.choice([65536, 300])
        reference.max_header_list_size = ours.max_header_list_size = limit
        for _ in range(15):
            fields = [(rng.choice(NAMES), bytes(rng.choice(b"abc/xyz ") for _ in range(rng.randint(0, 40))))
                      for _ in range(rng.randint(1, 12))]
            if rng.random() < 0.2:
                fields = [NeverIndexedHeaderTuple(*field) for field in fields]
            if rng.random() < 0.1:
                encoder.header_table_size = rng.choice([0, 256, 4096, 8192])
            block = encoder.encode(fields, huffman=rng.random() < 0.5)
            if rng.random() < 0.3:  # corrupted, truncated or extended
                corrupt = bytearray(block)
                choice = rng.random()
                if choice < 0.5:
                    corrupt[rng.randrange(len(corrupt))] = rng.randrange(256)
                elif choice < 0.75:
                    del corrupt[rng.randrange(len(corrupt)):]
                else:
                    corrupt += bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
                block = bytes(corrupt)
            expected = outcome(reference, block)
            assert outcome(ours, block) == expected, block
            assert list(ours.header_table.dynamic_entries) == list(reference.header_table.dynamic_entries)
            if expected[0] == "error":
                break  # the connection ends: its table no longer matters


def test_one_byte_indexes_past_the_table_are_refused() -> None:
    assert outcome(RequestDecoder(), b"\x80") == outcome(Decoder(), b"\x80")  # index 0
    assert outcome(RequestDecoder(), b"\xbe")[0] == "error"  # index 62: the dynamic table is empty
    assert outcome(RequestDecoder(), b"\x82\x84") == ("ok", [(type(f), tuple(f)) for f in Decoder().decode(b"\x82\x84", raw=True)])


def _string(value: bytes, huffman: bool) -> bytes:
    from hpack.huffman import HuffmanEncoder
    from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
    if huffman:
        value = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH).encode(value)
    assert len(value) < 127
    return bytes([(0x80 if huffman else 0) | len(value)]) + value


def _literal_without_indexing(rng: random.Random) -> bytes:
    """A field as nghttp2 sends :path: literal without indexing (RFC 7541 §6.2.2), its name a
    static index of one byte, a literal, or an index of several bytes (static or dynamic)."""
    value = _string(bytes(rng.choice(b"/items?q=1&") for _ in range(rng.randint(0, 40))), rng.random() < 0.7)
    kind = rng.random()
    if kind < 0.5:
        return bytes([rng.randint(1, 14)]) + value
    if kind < 0.8:
        return b"\x00" + _string(rng.choice(NAMES[4:8]), rng.random() < 0.5) + value
    return bytes([0x0F, rng.choice([0, 1, 46, 47, 60])]) + value  # index 15, 16, 61, 62, 75


@pytest.mark.parametrize("seed", range(4))
def test_literals_without_indexing_decode_as_hpack_does_also_when_seen_again(seed: int) -> None:
    # Such fields are remembered by their bytes (hpackdec._LITERALS): the second time a block is
    # decoded from there, except a name from the dynamic table, which depends on the table.
    rng = random.Random(seed)
    fields = [_literal_without_indexing(rng) for _ in range(30)]
    encoder, reference, ours = Encoder(), Decoder(), RequestDecoder()
    for _ in range(200):
        prefix = encoder.encode([(b"x-a", bytes(rng.choice(b"abc") for _ in range(rng.randint(1, 3))))])
        block = prefix + b"".join(rng.choice(fields) for _ in range(rng.randint(1, 4)))
        if rng.random() < 0.2:
            corrupt = bytearray(block)
            corrupt[rng.randrange(len(prefix), len(corrupt))] = rng.randrange(256)
            block = bytes(corrupt)
        assert outcome(ours, block) == outcome(reference, block)


def test_remembered_literals_are_bounded_and_never_hold_never_indexed_fields() -> None:
    from plexicorn.http2 import hpackdec
    decoder = RequestDecoder()
    hpackdec._LITERALS.clear()
    for index in range(hpackdec._LITERALS_LIMIT + 10):
        decoder.decode(b"\x04" + _string(b"/p%d" % index, True), raw=True)
    assert 0 < len(hpackdec._LITERALS) <= hpackdec._LITERALS_LIMIT
    hpackdec._LITERALS.clear()
    [field] = decoder.decode(b"\x10" + _string(b"authorization", False) + _string(b"secret", False), raw=True)
    assert isinstance(field, NeverIndexedHeaderTuple) and not hpackdec._LITERALS
    decoder.decode(b"\x04" + _string(b"/kept", True), raw=True)
    assert list(hpackdec._LITERALS.values()) == [(b":path", b"/kept")]


def test_only_literals_a_lookup_can_find_are_remembered() -> None:
    # A value of 127 bytes or more has a multi-byte length, a name index past the static table
    # depends on the dynamic one: the lookup never takes such a field, so keeping it would only
    # take room. A static name index of 15 or more (two bytes: content-length is 28) is kept.
    from plexicorn.http2 import hpackdec
    decoder = RequestDecoder()
    hpackdec._LITERALS.clear()
    long_value = b"/" + b"x" * 200
    [field] = decoder.decode(b"\x04\x7f" + bytes([len(long_value) - 127]) + long_value, raw=True)
    assert field == (b":path", long_value)
    decoder.decode(b"\x40" + _string(b"x-dynamic", False) + _string(b"1", False), raw=True)  # index 62
    [field] = decoder.decode(b"\x0f\x2f" + _string(b"2", False), raw=True)
    assert field == (b"x-dynamic", b"2")
    assert not hpackdec._LITERALS
    decoder.decode(b"\x04" + _string(b"/short", False), raw=True)
    [field] = decoder.decode(b"\x0f\x0d" + _string(b"16384", True), raw=True)
    assert field == (b"content-length", b"16384")
    assert list(hpackdec._LITERALS) == [b"\x04\x06/short", b"\x0f\x0d" + _string(b"16384", True)]
    # Credentials sent without the never-indexed flag are not kept either (static index or literal name).
    for block in (b"\x0f\x08" + _string(b"Bearer secret", True), b"\x0f\x11" + _string(b"sid=secret", False),
                  b"\x0f\x22" + _string(b"Basic c2VjcmV0", False),
                  b"\x00" + _string(b"cookie", False) + _string(b"sid=secret", False)):
        [field] = decoder.decode(block, raw=True)
        assert b"secret" in field[1] or field[1] == b"Basic c2VjcmV0"
    assert len(hpackdec._LITERALS) == 2
