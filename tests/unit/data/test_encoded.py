"""encoded: the splits encoded a chunk at a time into `.npy` files, all or nothing, read back
mapped and without pickle; what each holds is measured as it is written."""

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest

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
    written = encoded.write(paths, vocab)
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


def test_a_missing_split_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"test\.npy: cannot read the encoded split .*run the vocab stage"):
        EncodedSplits(tmp_path).load("test")
