"""splits: contiguous line splits of one file, seeded document splits of many."""

import pytest

from charlm.data.corpus import Document
from charlm.data.splits import check_lengths, split_documents, summary
from charlm.errors import DataError
from charlm.params import PrepareConfig

CFG = PrepareConfig(include=("*",), val_fraction=0.1, test_fraction=0.1)


def test_single_document_splits_contiguously_at_line_boundaries() -> None:
    text = "".join(f"line {i:04d}\n" for i in range(1000))
    splits = split_documents([Document("one.txt", text)], CFG, seed=0)
    assert splits["train"].text + splits["val"].text + splits["test"].text == text
    for split in splits.values():
        assert split.text.endswith("\n")
    assert splits["val"].text.startswith("line 0800")
    assert splits["test"].text.startswith("line 0900")


def _docs(n: int) -> list[Document]:
    return [Document(f"doc{i:02d}.txt", f"document {i}\n" * (10 + i)) for i in range(n)]


def test_documents_split_whole_deterministically_from_seed() -> None:
    docs = _docs(20)
    first = split_documents(docs, CFG, seed=7)
    assert first == split_documents(docs, CFG, seed=7)
    names = {k: {d.name for d in s.documents} for k, s in first.items()}
    assert (
        not names["train"] & names["val"]
        and not names["train"] & names["test"]
        and not names["val"] & names["test"]
    )
    assert names["train"] | names["val"] | names["test"] == {d.name for d in docs}
    total = sum(len(d.text) for d in docs)
    assert 0.1 * total <= len(first["val"].text) < 0.3 * total
    assert split_documents(docs, CFG, seed=8) != first


def test_explicit_document_lists() -> None:
    cfg = PrepareConfig(
        include=("*",), val_documents=("doc01.txt",), test_documents=("doc02.txt", "doc03.txt")
    )
    splits = split_documents(_docs(6), cfg, seed=0)
    assert [d.name for d in splits["val"].documents] == ["doc01.txt"]
    assert [d.name for d in splits["test"].documents] == ["doc02.txt", "doc03.txt"]
    with pytest.raises(DataError, match=r"unknown documents: \['nope.txt'\]"):
        split_documents(_docs(6), PrepareConfig(include=("*",), val_documents=("nope.txt",)), seed=0)


def test_too_short_split_is_rejected() -> None:
    splits = split_documents([Document("tiny.txt", "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n")], CFG, seed=0)
    with pytest.raises(DataError, match=r"the val split has 2 characters, fewer than one training sequence"):
        check_lengths(splits, seq_len=8)


def test_summary_counts() -> None:
    splits = split_documents(_docs(10), CFG, seed=1)
    report = summary(splits)
    assert sum(report[k]["documents"] for k in ("train", "val", "test")) == 10  # type: ignore[index]
    assert report["train"]["chars"] == len(splits["train"].text)  # type: ignore[index]
    assert sorted(n for names in report["assignment"].values() for n in names) == [
        f"doc{i:02d}.txt" for i in range(10)
    ]  # type: ignore[union-attr]
