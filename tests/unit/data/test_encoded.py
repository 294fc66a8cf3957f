"""encoded: the splits encoded a chunk at a time into `.npy` files, all or nothing, read back
mapped and without pickle; what each holds is measured as it is written."""

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest

from charlm.data import ngrams
from charlm.data.encoded import EncodedSplits
from charlm.data.vocab import Vocabulary
from charlm.errors import DataError


def test_write_load_and_hash(tmp_path: Path) -> None:
    texts = {"train": "hello w\u00f6rld\n" * 50, "val": "held out, with z and \u00e9\n"}
    paths = {}
    for split, text in texts.items():
        paths[split] = tmp_path / f"{split}.txt"
        paths[split].write_text(text)
    vocab = Vocabulary.build(texts["train"])
    encoded = EncodedSplits(tmp_path / "encoded")
    written = {split: data for split, (data, _) in encoded.write(paths, vocab, 2).items()}
    assert sorted(p.name for p in encoded.directory.iterdir()) == ["train.npy", "val.npy"]
    val = encoded.load("val")
    assert isinstance(val, np.memmap) and not val.flags.writeable  # mapped, not copied
    assert val.tolist() == vocab.encode(texts["val"]).tolist()
    unknown = sum(c not in texts["train"] for c in texts["val"])
    assert {split: data.oov_rate for split, data in written.items()} == {
        "train": 0.0,
        "val": unknown / len(texts["val"]),
    }
    assert {split: data.chars for split, data in written.items()} == {s: len(t) for s, t in texts.items()}
    assert encoded.load("train").dtype == np.uint8
    for split, text in texts.items():  # exactly what np.save writes of the whole text's ids
        whole = io.BytesIO()
        np.save(whole, vocab.encode(text))
        assert encoded.path(split).read_bytes() == whole.getvalue()
    for split, data in written.items():
        assert data.sha256 == hashlib.sha256(encoded.path(split).read_bytes()).hexdigest()
    assert written["train"].sha256 != written["val"].sha256


def test_the_ngrams_are_counted_as_the_splits_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("charlm.data.ngrams.BLOCK", 5)  # n-grams cross the blocks they are counted in
    text = "abracadabra\nalakazam\n" * 9
    (tmp_path / "train.txt").write_text(text)
    vocab = Vocabulary.build(text)
    ((_, counts),) = (
        EncodedSplits(tmp_path / "encoded").write({"train": tmp_path / "train.txt"}, vocab, 3).values()
    )
    ids = vocab.encode(text).tolist()
    assert counts.total == len(ids) and counts.head.tolist() == ids[:2]
    assert counts.unigram().tolist() == [ids.count(i) for i in range(len(vocab))]
    codes = ngrams.run_codes(np.array(ids), 3, len(vocab))
    assert counts.runs(3).count(codes).tolist() == [codes.tolist().count(c) for c in codes.tolist()]


def test_a_missing_split_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"test\.npy: cannot read the encoded split .*run the vocab stage"):
        EncodedSplits(tmp_path).load("test")
