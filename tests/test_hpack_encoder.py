"""Our HPACK encoder (http2/hpackenc.py): what it writes, hpack's decoder reads back exactly,
block after block, across table size changes; over a socket, h2 clients that shrink or disable
the table get responses they can decode."""

from __future__ import annotations

import random

import h2.events
import pytest
from h2.settings import SettingCodes
from hpack import Decoder, NeverIndexedHeaderTuple

from h2client import H2Client
from plexicorn.http2.hpackenc import DEFAULT_TABLE_SIZE, ResponseEncoder, encode_integer, huffman

NAMES = [b":status", b"date", b"content-type", b"content-length", b"x-a", b"set-cookie", b"server", b"vary", b"etag"]
VALUES = [b"200", b"404", b"text/plain", b"13", b"", b"x" * 3000, b"gzip, deflate", b"\xff\x00binary", b"  sp"]


def random_block(rng: random.Random) -> list:
    block = []
    for _ in range(rng.randint(0, 12)):
        name = rng.choice(NAMES)
        value = rng.choice(VALUES + [str(rng.randint(0, 50)).encode(),
                                     bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))])
        block.append(NeverIndexedHeaderTuple(name, value) if rng.random() < 0.1 else (name, value))
    return block


@pytest.mark.parametrize("seed", range(8))
def test_random_blocks_and_table_size_changes_decode_back_exactly(seed):
    rng = random.Random(seed)
    for _ in range(40):
        encoder, decoder = ResponseEncoder(), Decoder()
        for _ in range(rng.randint(1, 60)):
            if rng.random() < 0.1:
                encoder.header_table_size = rng.choice([0, 50, 256, 4096, 65536])
                if rng.random() < 0.5:  # changed twice between two blocks: smallest, then final
                    encoder.header_table_size = rng.choice([0, 64, 4096, 8192])
                decoder.max_allowed_table_size = encoder.header_table_size
            block = random_block(rng)
            decoded = decoder.decode(encoder.encode(block), raw=True)
            assert [tuple(field) for field in decoded] == [tuple(field) for field in block]
            assert [isinstance(field, NeverIndexedHeaderTuple) for field in decoded] == \
                [isinstance(field, NeverIndexedHeaderTuple) for field in block]
            assert decoder.header_table_size <= DEFAULT_TABLE_SIZE


def test_repeated_fields_become_one_byte_each_and_credentials_stay_out_of_the_table():
    encoder, decoder = ResponseEncoder(), Decoder()
    block = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"x-request", b"abc")]
    first = encoder.encode(block)
    assert encoder.encode(block) == bytes([0x88, 0x80 | 63, 0x80 | 62])  # static 8, then the two entries
    decoder.decode(first)
    secret = [NeverIndexedHeaderTuple(b"authorization", b"Bearer token")]
    assert encoder.encode(secret) == encoder.encode(secret)  # literal each time: never indexed
    assert encoder.encode(secret)[0] & 0xF0 == 0x10


def test_a_smaller_peer_table_is_announced_smallest_first_then_final():
    encoder = ResponseEncoder()
    encoder.encode([(b"x-a", b"1")])
    encoder.header_table_size = 0
    encoder.header_table_size = 1000
    block = encoder.encode([(b"x-a", b"1")])
    assert block.startswith(encode_integer(0, 5, 0x20) + encode_integer(1000, 5, 0x20))
    assert encoder.encode([(b"x-a", b"1")]) == bytes([0x80 | 62])  # indexed again, no further update


def test_fields_larger_than_the_table_are_sent_without_indexing():
    encoder = ResponseEncoder()
    encoder.header_table_size = 100
    block = encoder.encode([(b"x-big", b"v" * 200)])
    update = encode_integer(100, 5, 0x20)
    assert block.startswith(update) and block[len(update)] & 0xF0 == 0x00  # literal without indexing
    assert Decoder().decode(block, raw=True) == [(b"x-big", b"v" * 200)]


def test_huffman_matches_rfc7541_examples():
    # RFC 7541 C.4.1: "www.example.com"
    assert huffman(b"www.example.com") == bytes.fromhex("f1e3c2e5f23a6ba0ab90f4ff")
    assert huffman(b"no-cache") == bytes.fromhex("a8eb10649cbf")  # C.4.2


@pytest.mark.parametrize("table_size", [0, 100, 65536])
def test_clients_with_small_or_large_tables_decode_every_response(serve, table_size):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/plain"), (b"x-path", scope["path"].encode()), (b"x-long", b"y" * 300)]})
        await send({"type": "http.response.body", "body": b"ok"})

    running = serve(app)
    with H2Client(running.port, settings={SettingCodes.HEADER_TABLE_SIZE: table_size}) as client:
        for number in range(30):
            response = client.response(client.request("GET", f"/{number % 7}"))
            assert response["status"] == 200
            assert (b"x-path", f"/{number % 7}".encode()) in [tuple(field) for field in response["headers"]]
        assert not client.events_of(h2.events.ConnectionTerminated)
