"""splits: contiguous line splits of one file, seeded document splits of many, written as files."""

from pathlib import Path

import pytest

from charlm.data.corpus import Document
from charlm.data.splits import check_lengths, prepare_metrics, split_documents
from charlm.errors import DataError
from charlm.params.data import PrepareConfig
from tests.helpers import config

CFG = config(PrepareConfig, include=("*",), val_fraction=0.1, test_fraction=0.1)


def document(directory: Path, name: str, text: str) -> Document:
    path = directory / f"{name}.clean"
    path.write_text(text)
    return Document(name, path, len(text), text.count("\n"))


def texts(splits: dict, directory: Path) -> dict[str, str]:
    for name, split in splits.items():
        split.move_to(directory / f"{name}.txt")
    return {name: (directory / f"{name}.txt").read_text() for name in splits}


def reference_line_split(text: str, val_fraction: float, test_fraction: float) -> tuple[str, str, str]:
    """The cut as a single string would be cut: at the first line start after each fraction."""

    def boundary(fraction: float) -> int:
        cut = text.find("\n", max(int(len(text) * fraction) - 1, 0)) + 1
        return cut if cut > 0 else len(text)

    train_end = boundary(1 - val_fraction - test_fraction)
    val_end = max(train_end, boundary(1 - test_fraction))
    return text[:train_end], text[train_end:val_end], text[val_end:]


def test_single_document_splits_contiguously_at_line_boundaries(tmp_path: Path) -> None:
    text = "".join(f"line {i:04d}\n" for i in range(1000))
    splits = split_documents([document(tmp_path, "one.txt", text)], CFG, tmp_path)
    written = texts(splits, tmp_path)
    assert written["train"] + written["val"] + written["test"] == text
    assert written["val"].startswith("line 0800") and written["test"].startswith("line 0900")
    assert [d.name for d in splits["val"].documents] == ["one.txt#val"]
    assert splits["val"].chars == len(written["val"]) and splits["val"].lines == 100


@pytest.mark.parametrize(
    "text", ["a\n" * 7 + "b" * 50 + "\n" + "c\n" * 7, "ab\ncd\n" + "x" * 100, "é\n" * 333]
)
@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 7, 64, 1 << 20])
def test_a_document_read_in_chunks_is_cut_where_the_whole_text_would_be(
    tmp_path: Path, text: str, chunk_bytes: int
) -> None:
    splits = split_documents([document(tmp_path, "one.txt", text)], CFG, tmp_path, chunk_bytes)
    assert tuple(texts(splits, tmp_path).values()) == reference_line_split(text, 0.1, 0.1)


def _docs(directory: Path, n: int) -> list[Document]:
    return [document(directory, f"doc{i:02d}.txt", f"document {i}\n" * (10 + i)) for i in range(n)]


def test_documents_split_whole_deterministically_from_seed(tmp_path: Path) -> None:
    docs = _docs(tmp_path, 20)
    first = split_documents(docs, CFG.model_copy(update={"seed": 7}), tmp_path)
    assert first == split_documents(docs, CFG.model_copy(update={"seed": 7}), tmp_path)
    names = {k: {d.name for d in s.documents} for k, s in first.items()}
    assert not names["train"] & names["val"] and not names["train"] & names["test"]
    assert not names["val"] & names["test"]
    assert names["train"] | names["val"] | names["test"] == {d.name for d in docs}
    total = sum(d.chars for d in docs)
    assert 0.1 * total <= first["val"].chars < 0.3 * total
    assert split_documents(docs, CFG.model_copy(update={"seed": 8}), tmp_path) != first
    written = texts(first, tmp_path)
    assert written["val"] == "".join(d.path.read_text() for d in first["val"].documents)


def test_explicit_document_lists(tmp_path: Path) -> None:
    cfg = config(
        PrepareConfig, include=("*",), val_documents=("doc01.txt",), test_documents=("doc02.txt", "doc03.txt")
    )
    splits = split_documents(_docs(tmp_path, 6), cfg, tmp_path)
    assert [d.name for d in splits["val"].documents] == ["doc01.txt"]
    assert [d.name for d in splits["test"].documents] == ["doc02.txt", "doc03.txt"]
    with pytest.raises(DataError, match=r"unknown documents: \['nope.txt'\]"):
        split_documents(
            _docs(tmp_path, 6),
            config(PrepareConfig, include=("*",), val_documents=("nope.txt",)),
            tmp_path,
        )


def test_too_short_split_is_rejected(tmp_path: Path) -> None:
    splits = split_documents(
        [document(tmp_path, "tiny.txt", "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n")], CFG, tmp_path
    )
    with pytest.raises(DataError, match=r"the val split has 2 characters, fewer than one training sequence"):
        check_lengths(splits, seq_len=8)


def test_summary_counts(tmp_path: Path) -> None:
    splits = split_documents(_docs(tmp_path, 10), CFG, tmp_path)
    report = prepare_metrics(splits)
    assert sum(report[k]["documents"] for k in ("train", "val", "test")) == 10  # type: ignore[index]
    assert report["train"]["chars"] == splits["train"].chars  # type: ignore[index]
    assert sorted(n for names in report["assignment"].values() for n in names) == [  # type: ignore[union-attr]
        f"doc{i:02d}.txt" for i in range(10)
    ]
