"""corpus: selecting documents from files and archives, decoding, cleaning."""

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from charlm.data.corpus import clean, read_documents, strip_gutenberg
from charlm.data.splits import split_documents
from charlm.errors import DataError
from charlm.params import PrepareConfig, load_params
from tests.helpers import REPO

CFG = PrepareConfig(include=("*.txt",))

GUTENBERG = """The Project Gutenberg EBook of Hamlet
Release Date: 1998

*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***

HAMLET
To be, or not to be.

*** END OF THIS PROJECT GUTENBERG EBOOK HAMLET ***
This file should be named hamlet.txt
"""


def test_strip_gutenberg_keeps_only_the_work() -> None:
    assert strip_gutenberg(GUTENBERG).strip() == "HAMLET\nTo be, or not to be."
    assert strip_gutenberg("no markers\n") == "no markers\n"


def test_clean_normalises_newlines_and_unicode() -> None:
    decomposed = "Cafe\u0301\r\nline\rend"
    assert clean(decomposed, CFG) == "Caf\u00e9\nline\nend\n"
    raw = PrepareConfig(include=("*",), normalize_newlines=False, unicode_form="none", strip_gutenberg=False)
    assert clean(decomposed, raw) == decomposed + "\n"


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_archive_members_are_selected_by_glob(tmp_path: Path) -> None:
    _tar(
        tmp_path / "pkg.tar.gz",
        {
            "pkg/texts/hamlet_gut.txt": b"Hamlet\n",
            "pkg/texts/hamlet_gut_f.txt": b"Folio\n",
            "pkg/setup.py": b"x",
        },
    )
    with zipfile.ZipFile(tmp_path / "more.zip", "w") as zf:
        zf.writestr("extra/lear_gut.txt", "Lear\n")
    cfg = PrepareConfig(include=("*/texts/*_gut.txt", "extra/*"))
    docs = read_documents(tmp_path, cfg)
    assert [d.name for d in docs] == ["more.zip:extra/lear_gut.txt", "pkg.tar.gz:pkg/texts/hamlet_gut.txt"]
    assert [d.text for d in docs] == ["Lear\n", "Hamlet\n"]
    excluded = read_documents(tmp_path, PrepareConfig(include=("*.txt",), exclude=("*_f.txt", "extra/*")))
    assert [d.name for d in excluded] == ["pkg.tar.gz:pkg/texts/hamlet_gut.txt"]


def test_invalid_utf8_names_file_and_offset(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"abc\xffdef")
    with pytest.raises(DataError, match=r"bad\.txt: not valid UTF-8 at byte offset 3"):
        read_documents(tmp_path, CFG)


def test_empty_corpus_and_no_match(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DataError, match="no non-empty document matches"):
        read_documents(tmp_path, CFG)
    with pytest.raises(DataError, match="does not exist"):
        read_documents(tmp_path / "missing", CFG)


@pytest.mark.slow
def test_default_corpus_prepares_into_whole_modern_plays(default_corpus: Path) -> None:
    """The default params on the real default corpus: the modern-spelling works only, held-out
    splits made of whole plays near their fractions of the text, the prompts in the vocabulary."""
    params = load_params(REPO / "params.yaml")
    docs = read_documents(default_corpus, params.prepare)
    assert len(docs) == 42
    assert all(d.name.endswith("_gut.txt") for d in docs)  # no First Folio (_gut_f) copies
    splits = split_documents(docs, params.prepare, params.seed)
    names = [{d.name for d in split.documents} for split in splits.values()]
    assert sum(len(n) for n in names) == 42 and len(set.union(*names)) == 42  # each play in one split
    total = sum(len(split.text) for split in splits.values())
    for name, fraction in (("val", params.prepare.val_fraction), ("test", params.prepare.test_fraction)):
        assert fraction <= len(splits[name].text) / total < fraction + 0.05
    train_chars = set(splits["train"].text)
    assert all(set(prompt) <= train_chars for prompt in params.generate.prompts)
