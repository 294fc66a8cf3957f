"""vocab: built from training text only, vectorised encoding, hash-checked JSON."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from charlm.data.vocab import UNK, Vocabulary
from charlm.errors import DataError
from tests import corpora


def test_build_counts_and_unk() -> None:
    vocab = Vocabulary.build("aab\u00e9bb!", min_count=2)
    assert vocab.itos == (UNK, "a", "b")
    assert vocab.counts == (2, 2, 3)


def test_encode_decode_round_trip_and_unknown() -> None:
    vocab = Vocabulary.build("hello world\n")
    ids = vocab.encode("hello\n")
    assert ids.dtype == np.uint8
    assert vocab.decode(ids) == "hello\n"
    assert vocab.encode("hez").tolist()[-1] == 0
    assert vocab.decode(vocab.encode("hez")) == "he\ufffd"
    assert vocab.unknown_chars("zhaz!") == ["z", "a", "!"]


def test_dtype_grows_with_vocabulary() -> None:
    assert Vocabulary.build("".join(chr(0x100 + i) for i in range(300))).dtype == np.uint16


@pytest.mark.parametrize("extra", ["", "".join(chr(0x4E00 + i) for i in range(300))])
def test_counts_and_ids_of_every_utf8_length_are_exact(extra: str) -> None:
    """ASCII, 2-, 3- and 4-byte characters, with ids of one byte and (300 more symbols) of two."""
    text = "plain ascii\n caf\u00e9 \u0153uvre \u20ac \U0001f600\U0001f600 \u00e9" + extra
    vocab = Vocabulary.build(text)
    assert dict(zip(vocab.itos[1:], vocab.counts[1:], strict=True)) == Counter(text)
    assert vocab.dtype == (np.uint16 if extra else np.uint8)
    ids = vocab.encode(text + "\u00ff\U0001f601")  # two unknown characters at the end
    assert ids.tolist() == [vocab.itos.index(c) for c in text] + [0, 0]


def test_encoding_a_megabyte_is_exact() -> None:
    text = corpora.play(1_115_394)  # the size of tiny shakespeare
    vocab = Vocabulary.build(text)
    ids = vocab.encode(text)
    assert len(vocab) == len(set(text)) + 1  # every character + <unk>
    assert len(ids) == len(text)
    assert vocab.decode(ids) == text


def test_save_load_and_tamper_detection(tmp_path: Path) -> None:
    vocab = Vocabulary.build("abc")
    path = tmp_path / "vocab.json"
    vocab.save(path)
    assert Vocabulary.load(path) == vocab
    data = json.loads(path.read_text())
    data["itos"][1] = "z"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="does not match its contents"):
        Vocabulary.load(path)
    path.write_text("{broken")
    with pytest.raises(DataError, match="cannot read VocabFile"):
        Vocabulary.load(path)
