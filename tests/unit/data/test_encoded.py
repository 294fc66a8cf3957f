"""encoded: the splits written all at once, read back without pickle, each named by its file's hash."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from charlm.data.encoded import EncodedSplits
from charlm.errors import DataError


def test_write_load_and_hash(tmp_path: Path) -> None:
    encoded = EncodedSplits(tmp_path / "encoded")
    arrays = {"train": np.arange(10, dtype=np.uint8), "val": np.array([3, 1], dtype=np.uint8)}
    encoded.write(arrays)
    assert sorted(p.name for p in encoded.directory.iterdir()) == ["train.npy", "val.npy"]
    loaded = encoded.load("val")
    assert loaded.dtype == np.uint8 and loaded.tolist() == [3, 1]
    assert (
        encoded.sha256("train") == hashlib.sha256((encoded.directory / "train.npy").read_bytes()).hexdigest()
    )
    assert encoded.sha256("train") != encoded.sha256("val")


def test_a_missing_split_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"test\.npy: cannot read the encoded split .*run the vocab stage"):
        EncodedSplits(tmp_path).load("test")
