"""Read the raw corpus as named documents (text files in the raw directory and members of tar/zip
archives there, selected by the `prepare.include`/`exclude` globs) and clean each, whole lines a
chunk at a time, into a file of its own: Gutenberg boilerplate stripped, newlines normalised and a
Unicode normal form applied, as params say."""

import fnmatch
import re
import tarfile
import unicodedata
import zipfile
from codecs import BOM_UTF8
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

from charlm.data.chunks import decode, ignore, line_chunks
from charlm.errors import DataError
from charlm.params.data import PrepareConfig

# Gutenberg texts wrap the work between "*** START OF THIS PROJECT GUTENBERG EBOOK ..." and
# "*** END OF ..." lines (older releases: "THE" instead of "THIS", or a "SMALL PRINT" header).
_GUTENBERG_START = re.compile(
    r"^\*{3}\s*START OF (THIS|THE) PROJECT GUTENBERG.*$|^\*END\*THE SMALL PRINT.*$", re.I | re.M
)
_GUTENBERG_END = re.compile(
    r"^\*{3}\s*END OF (THIS|THE) PROJECT GUTENBERG.*$|^End of (the )?Project Gutenberg.*$", re.I | re.M
)


@dataclass(frozen=True)
class Document:
    name: str  # "hamlet.txt", or "archive.tar.gz:member/path.txt" inside an archive
    path: Path  # its cleaned text, UTF-8
    chars: int
    lines: int


@dataclass(frozen=True)
class RawEntry:
    name: str
    size: int  # bytes, for progress
    open: Callable[[], AbstractContextManager[BinaryIO]]


class CleanText:
    """Writes a document's cleaned text: without its leading and trailing newlines, then one newline
    at the end (`text.strip("\\n") + "\\n"`), counting what it writes."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.restart()

    def restart(self) -> None:
        """Discard what was written (a Gutenberg start marker came after it)."""
        self.out.seek(0)
        self.out.truncate()
        self.chars = self.lines = self.trailing = 0  # trailing: the newlines written last, in a row
        self.started, self.blank = False, True

    def write(self, text: str, data: bytes) -> None:
        """Write `text`, whose UTF-8 encoding is `data` (written as it is: encoding again costs)."""
        if not self.started:
            stripped = text.lstrip("\n")
            text, data = stripped, data[len(text) - len(stripped) :]
            self.started = bool(text)
        if not text:
            return
        tail = data[-256:]  # stripping the whole chunk would copy it
        newlines = len(tail) - len(tail.rstrip(b"\n"))
        if newlines == len(tail):  # newlines only, as far as the tail goes
            newlines = len(data) - len(data.rstrip(b"\n"))
        self.trailing = self.trailing + newlines if newlines == len(data) else newlines
        self.out.write(data)
        self.chars += len(text)
        self.lines += data.count(b"\n")
        self.blank = self.blank and text.isspace()

    def close(self) -> None:
        """End the text with exactly one newline: the trailing ones written are taken back."""
        self.out.seek(-self.trailing, 2)
        self.out.truncate()
        self.out.write(b"\n")
        self.chars += 1 - self.trailing
        self.lines += 1 - self.trailing


def clean(pieces: Iterator[tuple[int, bytes]], name: str, cfg: PrepareConfig, output: CleanText) -> None:
    """Clean a document's text, read in `pieces` (byte offset, bytes) of the file `name`, into
    `output`: newlines, Gutenberg markers, Unicode normal form. With `strip_gutenberg`, only the
    text between the first start marker and the first end marker after it is kept (all of it, up to
    the first end marker, when there is no start marker). Text and its bytes go together, so that
    bytes no step changed are written as they were read."""
    start_found = end_found = False
    for offset, data in pieces:
        text = decode(data, name, offset)
        if offset == 0 and text.startswith("\ufeff"):  # a byte-order mark
            text, data = text[1:], data[len(BOM_UTF8) :]
        if cfg.normalize_newlines and "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        marked = cfg.strip_gutenberg and _may_hold_a_marker(data)
        if marked and not start_found and (start := _GUTENBERG_START.search(text)):
            start_found, end_found = True, False
            output.restart()
            text = text[start.end() :]
            data = text.encode("utf-8")
        if end_found:
            continue  # nothing more to keep, unless a start marker comes
        if marked and (end := _GUTENBERG_END.search(text)):
            text, end_found = text[: end.start()], True
            data = text.encode("utf-8")
        if cfg.unicode_form != "none" and not data.isascii():  # ASCII is in every normal form
            normalized = unicodedata.normalize(cfg.unicode_form, text)
            if normalized is not text:  # the same object when it was already normalised
                text, data = normalized, normalized.encode("utf-8")
        output.write(text, data)
        if start_found and end_found:
            break
    output.close()


def _may_hold_a_marker(data: bytes) -> bool:
    """Whether UTF-8 `data` holds "gutenberg" or "mall pr", in any case: every marker does. Lowering
    the bytes is ASCII-only, and so, for these letters, is the markers' IGNORECASE (which matches
    four non-ASCII letters, standing for i, k and s); it is several times faster than the search."""
    low = data.lower()
    return b"gutenberg" in low or b"mall pr" in low


def _raw_entries(raw_dir: Path) -> Iterator[RawEntry]:
    """Every file in `raw_dir` and every member of archives there, in name order."""
    for path in sorted(p for p in raw_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(raw_dir).as_posix()
        if tarfile.is_tarfile(path):
            with tarfile.open(path) as tar:
                for member in sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name):
                    yield RawEntry(f"{rel}:{member.name}", member.size, partial(tar.extractfile, member))  # type: ignore[arg-type]
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                for info in sorted((i for i in zf.infolist() if not i.is_dir()), key=lambda i: i.filename):
                    yield RawEntry(f"{rel}:{info.filename}", info.file_size, partial(zf.open, info))
        else:
            yield RawEntry(rel, path.stat().st_size, partial(path.open, "rb"))


def _selected(name: str, cfg: PrepareConfig) -> bool:
    # Patterns match the member name inside an archive, or the path relative to the raw directory.
    inner = name.split(":", 1)[-1]
    return any(fnmatch.fnmatchcase(inner, p) for p in cfg.include) and not any(
        fnmatch.fnmatchcase(inner, p) for p in cfg.exclude
    )


def selected_bytes(raw_dir: Path, cfg: PrepareConfig) -> int:
    """How many raw bytes `read_documents` will read: what its progress counts to."""
    return sum(entry.size for entry in _raw_entries(raw_dir) if _selected(entry.name, cfg))


def read_documents(
    raw_dir: Path, cfg: PrepareConfig, workdir: Path, on_read: Callable[[int], object] = ignore
) -> list[Document]:
    """Clean the non-empty documents selected from `raw_dir` into files in `workdir`, in name order."""
    if not raw_dir.is_dir():
        raise DataError(f"{raw_dir}: raw corpus directory does not exist (run the fetch stage)")
    docs = []
    for entry in _raw_entries(raw_dir):
        if not _selected(entry.name, cfg):
            continue
        path = workdir / f"{len(docs)}.txt"
        with entry.open() as stream, open(path, "w+b") as out:
            output = CleanText(out)
            clean(line_chunks(stream, on_read=on_read), entry.name, cfg, output)
        if output.blank:
            path.unlink()
        else:
            docs.append(Document(entry.name, path, output.chars, output.lines))
    if not docs:
        raise DataError(
            f"{raw_dir}: no non-empty document matches prepare.include {list(cfg.include)}"
            f" and prepare.exclude {list(cfg.exclude)}"
        )
    return docs
