"""The HPACK decoder of requests (RFC 7541): `hpack.Decoder`, with its commonest case made cheap.

After a client's first request nearly every field of the next ones is an *indexed* field, one
byte naming an entry of the static or dynamic table. `hpack.Decoder` spends five Python calls
on each (slicing a memoryview, the integer decoder, the table look-up, two tuple constructions)
and logs it. This decoder handles a one-byte index inline and leaves everything else to
hpack's own code: literals, Huffman strings, multi-byte integers, table size updates and every
error they raise, so the RFC 7541 checks (table size, Huffman padding and EOS, integer
overflow, header list size) are hpack's, unchanged. It only decodes raw (bytes) blocks, as h2
asks it to; h2 reads and sets `max_header_list_size`, `max_allowed_table_size` and
`header_table_size` as on hpack's.
"""

from __future__ import annotations

from typing import Any

from hpack import HeaderTuple, HPACKDecodingError, OversizedHeaderListError
from hpack.hpack import Decoder
from hpack.table import HeaderTable

_STATIC_LENGTH = HeaderTable.STATIC_TABLE_LENGTH
_ENTRY_OVERHEAD = 32  # RFC 7541 §4.1
_new_tuple = tuple.__new__
# The static table's fields, as the HeaderTuples hpack returns for them (immutable: shared).
_STATIC = [None] + [_new_tuple(HeaderTuple, entry) for entry in HeaderTable.STATIC_TABLE]

# Literal fields "without indexing" whose name is a literal or a static index, by their
# exact bytes: such a field's decoding depends on nothing but its bytes (no table), and clients
# send the same ones again and again (nghttp2, curl and h2load send every :path so; its Huffman
# string costs hpack a Python loop per nibble, ~10x an indexed field). Shared by all connections,
# bounded (emptied when full). Never-indexed fields and credentials are not kept.
_LITERALS: dict[bytes, HeaderTuple] = {}
# Credentials are not kept either when a client sends them without the never-indexed flag: the
# cache is shared by every connection, and what it holds should not depend on another client's
# secrets.
_PRIVATE = frozenset({b"authorization", b"proxy-authorization", b"cookie"})
_LITERALS_LIMIT = 1024
_LITERAL_MAX = 256  # bytes of one field's encoding


def _literal_key(data: bytes, position: int) -> bytes | None:
    """The bytes of the literal field without indexing at `position` if it can be kept in
    `_LITERALS` (RFC 7541 §6.2.2: a name index of the static table, or a literal name; lengths in
    one byte)."""
    index = data[position] & 0x0F
    end = position + 1
    if index == 15:  # a name index of 15 or more, in two bytes (§5.1) at most: static ones only
        if end >= len(data) or data[end] + 15 > _STATIC_LENGTH:
            return None
        end += 1
    for _ in range(1 if index else 2):  # the value string, after the name string if literal
        if end >= len(data) or data[end] & 0x7F == 0x7F:
            return None
        end += 1 + (data[end] & 0x7F)
    if end > len(data) or end - position > _LITERAL_MAX:
        return None
    return data[position:end]


class RequestDecoder(Decoder):
    def decode(self, data: bytes, raw: bool = False) -> Any:
        if not raw:
            return super().decode(data, raw)
        data_mem: memoryview | None = None
        headers: list[HeaderTuple] = []
        append = headers.append
        data_len = len(data)
        inflated = 0
        limit = self.max_header_list_size
        table = self.header_table
        position = 0
        while position < data_len:
            current = data[position]
            if current & 0x80 and current != 0xFF:
                # An indexed field whose index fits the first byte (RFC 7541 §6.1, §5.1).
                index = current & 0x7F
                if 0 < index <= _STATIC_LENGTH:
                    header = _STATIC[index]
                else:
                    header = _new_tuple(HeaderTuple, table.get_by_index(index))  # raises InvalidTableIndex
                consumed = 1
            elif (not current & 0xF0 and (key := _literal_key(data, position)) is not None
                  and (known := _LITERALS.get(key)) is not None):
                header, consumed = known, len(key)
            else:
                if data_mem is None:
                    data_mem = memoryview(data)
                rest = data_mem[position:]
                if current & 0x80:
                    header, consumed = self._decode_indexed(rest)
                elif current & 0x40:
                    header, consumed = self._decode_literal_index(rest)
                elif current & 0x20:
                    if headers:
                        raise HPACKDecodingError("Table size update not at the start of the block")
                    position += self._update_encoding_context(rest)
                    continue
                else:
                    header, consumed = self._decode_literal_no_index(rest)
                # hpack's own result type, as its decode() makes it (bytes name and value).
                header = header.__class__(bytes(header[0]), bytes(header[1]))
                # `key` is this field's (the lookup above ran): None for one the lookup could
                # never find (a multi-byte index or length, too long), which is not kept.
                if not current & 0xF0 and key is not None and header[0] not in _PRIVATE:
                    if len(_LITERALS) >= _LITERALS_LIMIT:
                        _LITERALS.clear()
                    _LITERALS[key] = header
            append(header)
            inflated += _ENTRY_OVERHEAD + len(header[0]) + len(header[1])
            if inflated > limit:
                raise OversizedHeaderListError(f"A header list larger than {limit} has been received")
            position += consumed
        self._assert_valid_table_size()
        return headers
