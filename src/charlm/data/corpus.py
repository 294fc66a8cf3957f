"""Read the raw corpus as named documents and clean them.

A document is a text file in the raw directory or a member of a tar/zip archive there, selected
by the `prepare.include`/`exclude` globs on its name. Cleaning strips Project Gutenberg licence
boilerplate, normalises newlines and applies a Unicode normal form, as params say.
"""

import fnmatch
import re
import tarfile
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from charlm.errors import DataError
from charlm.params import PrepareConfig

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
    text: str


def decode_utf8(data: bytes, name: str) -> str:
    """Decode strictly; the error names the file and the first bad byte offset."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{name}: not valid UTF-8 at byte offset {err.start} ({err.reason})") from None
    return text.removeprefix("\ufeff")


def _raw_entries(raw_dir: Path) -> Iterator[tuple[str, bytes]]:
    """Yield (name, bytes) for every file in `raw_dir` and every member of archives there."""
    for path in sorted(p for p in raw_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(raw_dir).as_posix()
        if tarfile.is_tarfile(path):
            with tarfile.open(path) as tar:
                for member in sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name):
                    f = tar.extractfile(member)
                    assert f is not None
                    yield f"{rel}:{member.name}", f.read()
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                for info in sorted((i for i in zf.infolist() if not i.is_dir()), key=lambda i: i.filename):
                    yield f"{rel}:{info.filename}", zf.read(info)
        else:
            yield rel, path.read_bytes()


def _selected(name: str, cfg: PrepareConfig) -> bool:
    # Patterns match the member name inside an archive, or the path relative to the raw directory.
    inner = name.split(":", 1)[-1]
    return any(fnmatch.fnmatchcase(inner, p) for p in cfg.include) and not any(
        fnmatch.fnmatchcase(inner, p) for p in cfg.exclude
    )


def strip_gutenberg(text: str) -> str:
    """Keep only the text between Gutenberg's start and end markers (all of it when absent)."""
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end() :]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[: end.start()]
    return text


def clean(text: str, cfg: PrepareConfig) -> str:
    if cfg.normalize_newlines:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if cfg.strip_gutenberg:
        text = strip_gutenberg(text)
    if cfg.unicode_form != "none":
        text = unicodedata.normalize(cfg.unicode_form, text)
    return text.strip("\n") + "\n"


def read_documents(raw_dir: Path, cfg: PrepareConfig) -> list[Document]:
    """The cleaned, non-empty documents selected from `raw_dir`, in name order."""
    if not raw_dir.is_dir():
        raise DataError(f"{raw_dir}: raw corpus directory does not exist (run the fetch stage)")
    docs = []
    for name, data in _raw_entries(raw_dir):
        if not _selected(name, cfg):
            continue
        text = clean(decode_utf8(data, name), cfg)
        if text.strip():
            docs.append(Document(name=name, text=text))
    if not docs:
        raise DataError(
            f"{raw_dir}: no non-empty document matches prepare.include {list(cfg.include)}"
            f" and prepare.exclude {list(cfg.exclude)}"
        )
    return docs
