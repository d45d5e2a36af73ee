"""The HPACK encoder of our responses (RFC 7541), in place of `hpack.Encoder`.

`hpack.Encoder` finds a field in the dynamic table by walking the table, Huffman-codes every
literal again and logs each field: a seventh of the cost of a small HTTP/2 response. A server
repeats the same few fields on every response, so this encoder finds a field with one dict
lookup (each entry is keyed by its insertion number; its index is derived from how many were
inserted since) and remembers the Huffman form of recent literals. Its output is plain RFC 7541,
decoded by any peer; `h2` only calls `encode(headers)` and sets `header_table_size`.

Policy: every field is added to the dynamic table (incremental indexing) except fields marked
sensitive (`hpack.NeverIndexedHeaderTuple`: never indexed) and fields larger than the table.
The table is at most 4096 bytes whatever the peer allows, which bounds its memory.
"""

from __future__ import annotations

from collections import deque
from typing import Iterable

from hpack import HeaderTuple
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable

DEFAULT_TABLE_SIZE = 4096  # RFC 7541 §6.5.2 / RFC 9113 SETTINGS_HEADER_TABLE_SIZE initial value
_ENTRY_OVERHEAD = 32  # RFC 7541 §4.1
_FIRST_DYNAMIC = len(HeaderTable.STATIC_TABLE) + 1  # the index of the newest dynamic entry
_HUFFMAN_MEMO_LIMIT = 512  # literals whose Huffman form is remembered (cleared when full)

# name -> (index of the name, {value: index of the whole field}), lowest indexes first.
_STATIC: dict[bytes, tuple[int, dict[bytes, int]]] = {}
for _index, (_name, _value) in enumerate(HeaderTable.STATIC_TABLE, 1):
    _STATIC.setdefault(_name, (_index, {}))[1].setdefault(_value, _index)


# Indexed fields (RFC 7541 §6.1) below 127 are one byte: made once.
_INDEXED = [bytes((0x80 | index,)) for index in range(127)]


def _indexed(index: int) -> bytes:
    return _INDEXED[index] if index < 127 else encode_integer(index, 7, 0x80)


def encode_integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """RFC 7541 §5.1: `value` on a `prefix_bits` prefix, `first` holding the pattern bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def huffman(data: bytes) -> bytes:
    """RFC 7541 §5.2 / Appendix B: `data` Huffman-coded, padded with the EOS prefix."""
    bits = 0
    length = 0
    for byte in data:
        size = REQUEST_CODES_LENGTH[byte]
        bits = (bits << size) | REQUEST_CODES[byte]
        length += size
    padding = -length % 8
    bits = (bits << padding) | ((1 << padding) - 1)
    return bits.to_bytes((length + padding) // 8, "big")


class ResponseEncoder:
    def __init__(self) -> None:
        self._max_size = DEFAULT_TABLE_SIZE  # what the peer allows
        self._size_limit = DEFAULT_TABLE_SIZE  # what we use: min(peer's limit, DEFAULT_TABLE_SIZE)
        self._size = 0
        # Oldest first: (name, value, insertion number, size). The index of insertion number n
        # is _FIRST_DYNAMIC + (self._inserted - n).
        self._entries: deque[tuple[bytes, bytes, int, int]] = deque()
        self._inserted = 0
        self._fields: dict[tuple[bytes, bytes], int] = {}  # field -> its newest insertion number
        self._names: dict[bytes, int] = {}  # name -> the newest insertion number with that name
        # Table size updates owed at the start of the next block (RFC 7541 §4.2): the smallest
        # size set since the last block, then the final one.
        self._smallest_change: int | None = None
        self._huffman_memo: dict[bytes, bytes] = {}

    # -- what h2 uses -----------------------------------------------------------------------
    @property
    def header_table_size(self) -> int:
        return self._max_size

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        """The peer's SETTINGS_HEADER_TABLE_SIZE."""
        self._max_size = value
        limit = min(value, DEFAULT_TABLE_SIZE)
        if limit == self._size_limit and self._smallest_change is None:
            return
        self._size_limit = limit
        self._smallest_change = limit if self._smallest_change is None else min(self._smallest_change, limit)
        self._evict_to(limit)

    def encode(self, headers: Iterable[tuple[bytes, bytes]], huffman: bool = True) -> bytes:
        block = []
        if self._smallest_change is not None:
            if self._smallest_change < self._size_limit:
                block.append(encode_integer(self._smallest_change, 5, 0x20))
            block.append(encode_integer(self._size_limit, 5, 0x20))
            self._smallest_change = None
        for field in headers:
            name, value = field
            if isinstance(field, HeaderTuple) and not field.indexable:
                block.append(self._literal(name, value, 4, 0x10))
                continue
            static = _STATIC.get(name)
            if static is not None:
                index = static[1].get(value)
                if index is not None:
                    block.append(_INDEXED[index])  # the static table has 61 entries
                    continue
            number = self._fields.get((name, value))
            if number is not None:
                block.append(_indexed(_FIRST_DYNAMIC + self._inserted - number))
                continue
            entry_size = len(name) + len(value) + _ENTRY_OVERHEAD
            if entry_size > self._size_limit:
                block.append(self._literal(name, value, 4, 0x00))  # without indexing
            else:
                block.append(self._literal(name, value, 6, 0x40))
                self._insert(name, value, entry_size)
        return b"".join(block)

    # -- the dynamic table -----------------------------------------------------------------
    def _literal(self, name: bytes, value: bytes, prefix_bits: int, pattern: int) -> bytes:
        """A literal field whose name is indexed when a table has it (looked up before any
        insertion of this field, as the decoder will)."""
        static = _STATIC.get(name)
        if static is not None:
            head = encode_integer(static[0], prefix_bits, pattern)
        else:
            number = self._names.get(name)
            if number is not None:
                head = encode_integer(_FIRST_DYNAMIC + self._inserted - number, prefix_bits, pattern)
            else:
                head = bytes((pattern,)) + self._string(name)
        return head + self._string(value)

    def _string(self, data: bytes) -> bytes:
        coded = self._huffman_memo.get(data)
        if coded is None:
            compressed = huffman(data)
            if len(compressed) < len(data):
                coded = encode_integer(len(compressed), 7, 0x80) + compressed
            else:
                coded = encode_integer(len(data), 7) + data
            if len(self._huffman_memo) >= _HUFFMAN_MEMO_LIMIT:
                self._huffman_memo.clear()
            self._huffman_memo[data] = coded
        return coded

    def _insert(self, name: bytes, value: bytes, entry_size: int) -> None:
        self._evict_to(self._size_limit - entry_size)
        self._inserted += 1
        number = self._inserted
        self._entries.append((name, value, number, entry_size))
        self._size += entry_size
        self._fields[(name, value)] = number
        self._names[name] = number

    def _evict_to(self, size: int) -> None:
        entries = self._entries
        while self._size > size:
            name, value, number, entry_size = entries.popleft()
            self._size -= entry_size
            # A newer copy of the same field or name keeps its own (newer) number.
            if self._fields.get((name, value)) == number:
                del self._fields[(name, value)]
            if self._names.get(name) == number:
                del self._names[name]
