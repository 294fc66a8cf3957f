"""Text files a chunk at a time: pieces cut at line ends, decoded strictly, counted and turned into
code points straight from their UTF-8 bytes, so a corpus of any size streams through in bounded
memory and the work per byte is vectorised."""

from collections.abc import Callable, Iterator
from typing import BinaryIO

import numpy as np

from charlm.errors import DataError

CHUNK_BYTES = 4 << 20


def ignore(_: int) -> None:
    """A progress callback that counts nothing."""


def line_chunks(
    stream: BinaryIO, chunk_bytes: int = CHUNK_BYTES, on_read: Callable[[int], object] = ignore
) -> Iterator[tuple[int, bytes]]:
    """The stream's bytes in pieces that each end at a line end (but the last), with their offsets:
    cut after a "\\n", or after a "\\r" that is not the buffer's last byte (so a CRLF pair stays
    whole); UTF-8 never has those bytes inside a character."""
    offset, carry = 0, b""
    while True:
        data = stream.read(chunk_bytes)
        on_read(len(data))
        buffer = carry + data
        line_end = buffer.rfind(b"\n") + 1 or buffer.rfind(b"\r", 0, len(buffer) - 1) + 1
        cut = line_end if data else len(buffer)
        piece, carry = buffer[:cut], buffer[cut:]
        if piece:
            yield offset, piece
        offset += len(piece)
        if not data:
            return


def decode(data: bytes, name: str, offset: int) -> str:
    """`data`, read at byte `offset` of the file `name`, decoded strictly: an invalid byte is a
    DataError naming the file and the byte's offset in it."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{name}: not valid UTF-8 at byte offset {offset + err.start} ({err.reason})"
        ) from None


def utf8_chars(data: bytes) -> int:
    """The characters in valid UTF-8 `data`: its bytes but the continuation bytes."""
    return len(data) if data.isascii() else int(np.count_nonzero(char_starts(data)))


def multibyte(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The multi-byte characters of valid UTF-8 `data`: their indices among its characters and their
    code points, (M,) each. The other characters are ASCII: each is its own byte, below 0x80.
    Decoding to a Python string and re-encoding it as UTF-32 costs several times more than this,
    which does arithmetic only on the multi-byte characters' own bytes."""
    b = np.frombuffer(data, np.uint8)
    first = np.flatnonzero(b >= 0xC0)  # where each multi-byte character starts, in bytes
    lead = b[first].astype(np.int32)
    follow = 1 + (lead >= 0xE0) + (lead >= 0xF0)  # its continuation bytes: 110xxxxx, 1110xxxx, 11110xxx
    value = lead & (0x7F >> (follow + 1))
    for k in (1, 2, 3):
        more = follow >= k
        value[more] = (value[more] << 6) | (b[first[more] + k] & 0x3F)
    # A character's index is its first byte's offset less the continuation bytes before it.
    return first - np.cumsum(follow) + follow, value


def char_starts(data: bytes) -> np.ndarray:
    """Which bytes of UTF-8 `data` start a character, (len(data),): all but the continuation bytes,
    0x80..0xBF, which as int8 are the values below -0x40."""
    return np.frombuffer(data, np.int8) >= -0x40
