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
