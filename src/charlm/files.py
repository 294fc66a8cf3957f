"""Files written atomically (to a temporary name in their directory, flushed, then renamed over the
destination), so a reader or a crash never sees one half-written; directories replaced whole,
advisory locks, and writers that hash what they write in a thread of their own."""

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from charlm.errors import LockedError


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on error it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A CSV with a header; each row gives a value for every column, in order."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([columns, *rows])
    write_text(path, buffer.getvalue())


@contextlib.contextmanager
def replace_dir(path: Path) -> Iterator[Path]:
    """Yield an empty staging directory that replaces directory `path` only if the block succeeds:
    the old one is removed just before the rename, so a failure anywhere inside the block leaves
    `path` exactly as it was and no staging directory behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield staging
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def file_lock(path: Path, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path`, which records its holder's pid. The kernel
    releases the lock when its holder dies, however it dies, so a crash never leaves a stale lock.
    With `wait=False` a held lock raises LockedError naming the holder instead."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise LockedError(str(path), f.read().strip() or "unknown") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Worker:
    """Calls `work` on each item handed to `put`, in order, in a thread of its own, so the work
    overlaps the caller's (numpy, torch, hashlib and file writes let go of the GIL). Used as a
    context manager, which waits for every item on leaving; an error in the work is raised by the
    next `put` or on leaving. An item must not change once handed over."""

    def __init__(self, work: Callable[[Any], object]) -> None:
        self.work, self.error = work, None
        self.pending: queue.Queue[Any] = queue.Queue(maxsize=2)  # at most two wait: bounded memory
        self.thread = threading.Thread(target=self._drain, daemon=True)

    def __enter__(self) -> "Worker":
        self.thread.start()
        return self

    def _drain(self) -> None:
        while (item := self.pending.get()) is not None:
            if self.error is None:
                try:
                    self.work(item)
                except BaseException as err:  # handed to the caller's thread
                    self.error = err

    def put(self, item: Any) -> None:
        if self.error is not None:
            raise self.error
        self.pending.put(item)

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.pending.put(None)
        self.thread.join()
        if self.error is not None and kind is None:
            raise self.error


class HashedWriter(Worker):
    """A new file, written and hashed (sha256) in a thread of its own: `write` returns at once,
    and `sha256` is the hash of all that was written once the block has left."""

    def __init__(self, path: Path) -> None:
        super().__init__(self._write)
        self.path, self.digest = path, hashlib.sha256()

    def __enter__(self) -> "HashedWriter":
        self.file = open(self.path, "wb")
        return super().__enter__()  # type: ignore[return-value]

    def _write(self, data: Any) -> None:
        self.digest.update(data)
        self.file.write(data)

    def write(self, data: Any) -> int:
        self.put(data)
        return memoryview(data).nbytes

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        try:
            super().__exit__(kind, *rest)
        finally:
            self.file.close()

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
