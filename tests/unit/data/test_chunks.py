"""chunks: pieces cut at line ends, strict decoding with offsets, and code points computed from
UTF-8 bytes exactly as Python decodes them."""

import io
import random

import numpy as np
import pytest

from charlm.data.chunks import char_starts, decode, line_chunks, multibyte, utf8_chars
from charlm.errors import DataError


def _text(rng: random.Random, length: int) -> str:
    """Characters of every UTF-8 length: 1, 2, 3 (either side of the surrogates) and 4 bytes."""
    ranges = ((0, 0x80), (0x80, 0x800), (0x800, 0xD800), (0xE000, 0x10000), (0x10000, 0x110000))
    return "".join(chr(rng.randrange(*rng.choice(ranges))) for _ in range(length))


def test_code_points_from_bytes_equal_python_decoding() -> None:
    rng = random.Random(0)
    for length in (*range(8), *(rng.randrange(8, 400) for _ in range(200))):
        text = _text(rng, length)
        data = text.encode("utf-8")
        expected = np.array([ord(c) for c in text], dtype=np.int64)
        starts = np.flatnonzero(char_starts(data))
        assert utf8_chars(data) == len(text) == len(starts)
        chars = np.frombuffer(data, np.uint8)[starts].astype(np.int64)
        where, values = multibyte(data)
        chars[where] = values
        assert chars.tolist() == expected.tolist(), text
        assert (expected[where] >= 0x80).all() and (np.delete(expected, where) < 0x80).all()


def test_pieces_end_at_line_ends_with_their_offsets() -> None:
    data = "\r".join(f"line {i} \u00e9" for i in range(200)).encode()  # lines ended by CR alone
    pieces = list(line_chunks(io.BytesIO(data), chunk_bytes=64))
    assert len(pieces) > 10 and b"".join(piece for _, piece in pieces) == data
    assert all(piece.endswith(b"\r") for _, piece in pieces[:-1])
    assert [offset for offset, _ in pieces] == np.cumsum([0, *(len(p) for _, p in pieces[:-1])]).tolist()
    crlf = b"ab\r\ncd\r\n" * 20
    assert all(piece.endswith(b"\r\n") for _, piece in line_chunks(io.BytesIO(crlf), chunk_bytes=3))


def test_decoding_names_the_file_and_the_byte_offset() -> None:
    assert decode("caf\u00e9".encode(), "doc.txt", 0) == "caf\u00e9"
    with pytest.raises(DataError, match=r"^doc\.txt: not valid UTF-8 at byte offset 900000003 \(invalid"):
        decode(b"abc\xffdef", "doc.txt", 900_000_000)
