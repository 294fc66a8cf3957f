"""files: work handed to a thread is done in order and its errors reach the caller; a file written
and hashed in a thread is the file, and the hash is its sha256."""

import hashlib
import threading
from pathlib import Path

import numpy as np
import pytest

from charlm.files import HashedWriter, Worker


def test_a_worker_does_every_item_in_order_in_another_thread() -> None:
    done: list[tuple[int, bool]] = []
    with Worker(lambda item: done.append((item, threading.current_thread() is threading.main_thread()))) as w:
        for item in range(100):
            w.put(item)
    assert done == [(item, False) for item in range(100)]


def test_an_error_in_the_work_reaches_the_caller() -> None:
    def work(item: int) -> None:
        if item == 3:
            raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"), Worker(work) as w:
        for item in range(10):
            w.put(item)


def test_an_error_in_the_caller_stops_the_worker(tmp_path: Path) -> None:
    out = HashedWriter(tmp_path / "f")
    with pytest.raises(KeyError), out:
        out.write(b"abc")
        raise KeyError("the caller's own")
    assert not out.thread.is_alive() and out.file.closed


def test_the_written_file_and_its_hash(tmp_path: Path) -> None:
    parts = [b"header", np.arange(1000, dtype=np.uint8), np.arange(7, dtype=np.uint16)]
    with HashedWriter(tmp_path / "f") as out:
        for part in parts:
            assert out.write(part) == memoryview(part).nbytes
    expected = b"".join(bytes(memoryview(part)) for part in parts)
    assert (tmp_path / "f").read_bytes() == expected
    assert out.sha256 == hashlib.sha256(expected).hexdigest()
