"""corpus: selecting documents from files and archives, decoding, cleaning, a chunk at a time
with the same result as all at once."""

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from charlm.data.chunks import line_chunks
from charlm.data.corpus import CleanText, clean, read_documents
from charlm.data.splits import split_documents
from charlm.errors import DataError
from charlm.params.base import load_params
from charlm.params.data import PrepareConfig
from charlm.params.pipeline import Params
from tests.helpers import REPO, config

CFG = config(PrepareConfig, include=("*.txt",))
RAW = config(
    PrepareConfig, include=("*",), normalize_newlines=False, unicode_form="none", strip_gutenberg=False
)

GUTENBERG = """The Project Gutenberg EBook of Hamlet
Release Date: 1998

*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***

HAMLET
To be, or not to be.

*** END OF THIS PROJECT GUTENBERG EBOOK HAMLET ***
This file should be named hamlet.txt
"""


def cleaned(data: bytes, cfg: PrepareConfig = CFG, chunk_bytes: int = 1 << 20) -> str:
    """The document's cleaned text, read `chunk_bytes` at a time."""
    out = io.BytesIO()
    clean(line_chunks(io.BytesIO(data), chunk_bytes), "doc.txt", cfg, CleanText(out))
    return out.getvalue().decode("utf-8")


def test_gutenberg_markers_keep_only_the_work() -> None:
    assert cleaned(GUTENBERG.encode()).strip() == "HAMLET\nTo be, or not to be."
    assert cleaned(b"no markers\n") == "no markers\n"
    # An end marker before any start marker ends the text; a later start marker starts it afresh.
    ended = b"before\n*** END OF THE PROJECT GUTENBERG EBOOK ***\nafter\n"
    assert cleaned(ended) == "before\n"
    assert cleaned(ended + GUTENBERG.encode()).strip() == "HAMLET\nTo be, or not to be."


def test_clean_normalises_newlines_and_unicode() -> None:
    decomposed = "\ufeff\n\nCafe\u0301\r\nline\rend\n\n"
    assert cleaned(decomposed.encode()) == "Caf\u00e9\nline\nend\n"
    assert cleaned(decomposed.encode(), RAW) == "Cafe\u0301\r\nline\rend\n"  # only the ends' newlines go


def test_chunk_boundaries_inside_crlf_and_before_a_combining_character_change_nothing() -> None:
    data = ("x" * 40 + "\r\n" + "Cafe\u0301 au lait\r\nline\rend\n").encode()
    inside_crlf = data.index(b"\r\n") + 1  # a read ends between the \r and the \n
    before_combining = data.index("\u0301".encode())  # a read ends between "e" and its accent
    assert cleaned(data) == "x" * 40 + "\nCaf\u00e9 au lait\nline\nend\n"
    for chunk_bytes in (inside_crlf, before_combining, *range(1, 12)):
        assert cleaned(data, chunk_bytes=chunk_bytes) == cleaned(data), chunk_bytes
        assert cleaned(data, RAW, chunk_bytes) == cleaned(data, RAW), chunk_bytes
    marked = ("\r\n" * 3 + GUTENBERG.replace("\n", "\r\n") + "more\r\n").encode()  # markers in any chunk
    ended = b"before\n*** END OF THE PROJECT GUTENBERG EBOOK ***\nafter\nand after\n"
    for chunk_bytes in range(1, 40):
        assert cleaned(marked, chunk_bytes=chunk_bytes) == "HAMLET\nTo be, or not to be.\n", chunk_bytes
        assert cleaned(ended, chunk_bytes=chunk_bytes) == "before\n", chunk_bytes


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_archive_members_are_selected_by_glob(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    _tar(
        raw / "pkg.tar.gz",
        {
            "pkg/texts/hamlet_gut.txt": b"Hamlet\n",
            "pkg/texts/hamlet_gut_f.txt": b"Folio\n",
            "pkg/setup.py": b"x",
        },
    )
    with zipfile.ZipFile(raw / "more.zip", "w") as zf:
        zf.writestr("extra/lear_gut.txt", "Lear\n")
    cfg = config(PrepareConfig, include=("*/texts/*_gut.txt", "extra/*"))
    docs = read_documents(raw, cfg, tmp_path)
    assert [d.name for d in docs] == ["more.zip:extra/lear_gut.txt", "pkg.tar.gz:pkg/texts/hamlet_gut.txt"]
    assert [d.path.read_text() for d in docs] == ["Lear\n", "Hamlet\n"]
    assert [(d.chars, d.lines) for d in docs] == [(5, 1), (7, 1)]
    excluded = read_documents(
        raw, config(PrepareConfig, include=("*.txt",), exclude=("*_f.txt", "extra/*")), tmp_path
    )
    assert [d.name for d in excluded] == ["pkg.tar.gz:pkg/texts/hamlet_gut.txt"]


def test_invalid_utf8_names_file_and_offset_in_any_chunk(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"abc\xffdef")
    with pytest.raises(DataError, match=r"bad\.txt: not valid UTF-8 at byte offset 3"):
        read_documents(tmp_path, CFG, tmp_path)
    late = b"abc\n" * 1000 + "\u00e9".encode()[:1] + b"\n"  # a truncated character at byte 4,000
    with pytest.raises(DataError, match=r"doc\.txt: not valid UTF-8 at byte offset 4000 \(invalid"):
        cleaned(late, chunk_bytes=64)


def test_empty_corpus_and_no_match(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "empty.txt").write_text("\n\n")
    (raw / "spaces.txt").write_text("  \n \t\n")
    with pytest.raises(DataError, match="no non-empty document matches"):
        read_documents(raw, CFG, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]  # nothing cleaned is left behind
    with pytest.raises(DataError, match="does not exist"):
        read_documents(tmp_path / "missing", CFG, tmp_path)


@pytest.mark.slow
def test_default_corpus_prepares_into_whole_modern_plays(default_corpus: Path, tmp_path: Path) -> None:
    """The default params on the real default corpus: the modern-spelling works only, held-out
    splits made of whole plays near their fractions of the text, the prompts in the vocabulary."""
    params = load_params(Params, REPO / "params.yaml")
    docs = read_documents(default_corpus, params.prepare, tmp_path)
    assert len(docs) == 42
    assert all(d.name.endswith("_gut.txt") for d in docs)  # no First Folio (_gut_f) copies
    splits = split_documents(docs, params.prepare, tmp_path)
    names = [{d.name for d in split.documents} for split in splits.values()]
    assert sum(len(n) for n in names) == 42 and len(set.union(*names)) == 42  # each play in one split
    total = sum(split.chars for split in splits.values())
    for name, fraction in (("val", params.prepare.val_fraction), ("test", params.prepare.test_fraction)):
        assert fraction <= splits[name].chars / total < fraction + 0.05
    splits["train"].move_to(tmp_path / "train.txt")
    train_chars = set((tmp_path / "train.txt").read_text())
    assert all(set(prompt) <= train_chars for prompt in params.generate.prompts)
