"""The character vocabulary: built from the training split only, saved as JSON with a content hash;
id 0 is `<unk>`, then the kept characters in code-point order. Counting and encoding work on UTF-8
bytes a chunk at a time, vectorised, so they stream a corpus of any size."""

import hashlib
import json
import unicodedata
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field, model_validator

from charlm.data.chunks import char_starts, multibyte
from charlm.errors import DataError
from charlm.params.data import UnicodeForm
from charlm.records import Record

UNK = "<unk>"
UNK_ID = 0
REPLACEMENT_CHAR = "\ufffd"  # how <unk> is decoded, keeping one character per id
CODE_POINTS = 0x110000


def char_counts(chunks: Iterable[bytes]) -> np.ndarray:
    """How often each code point occurs in the chunks of valid UTF-8, (CODE_POINTS,)."""
    counts = np.zeros(CODE_POINTS, dtype=np.int64)
    for data in filter(None, chunks):
        # An ASCII character is its own byte; multi-byte characters' bytes are all 0x80 or more.
        # torch's bincount of bytes is several times faster than numpy's, which widens them first.
        with warnings.catch_warnings():  # torch warns that bytes are read-only; it only reads them
            warnings.simplefilter("ignore", UserWarning)
            byte_counts = torch.bincount(torch.frombuffer(data, dtype=torch.uint8), minlength=0x100)
        counts[:0x80] += byte_counts[:0x80].numpy()
        _, multi = multibyte(data)
        counts += np.bincount(multi, minlength=CODE_POINTS)
    return counts


@dataclass(frozen=True)
class Vocabulary:
    itos: tuple[str, ...]  # itos[0] is UNK, then single characters sorted by code point
    counts: tuple[int, ...]  # training-split count of each entry (for UNK: the characters it replaced)
    unicode_form: UnicodeForm  # the normal form of the text it was built from (`prepare.unicode_form`)

    @classmethod
    def from_counts(cls, counts: np.ndarray, min_count: int, unicode_form: UnicodeForm) -> "Vocabulary":
        """The characters counted at least `min_count` times, by code point; the rarer ones are <unk>."""
        seen = np.flatnonzero(counts)
        kept = seen[counts[seen] >= min_count]
        if not len(kept):
            raise DataError(
                f"no character occurs at least vocab.min_count={min_count} times in the training split"
            )
        unk_count = int(counts[seen].sum() - counts[kept].sum())
        itos, kept_counts = (UNK, *map(chr, kept.tolist())), (unk_count, *counts[kept].tolist())
        return cls(itos=itos, counts=kept_counts, unicode_form=unicode_form)

    @classmethod
    def build(cls, text: str, min_count: int = 1, unicode_form: UnicodeForm = "none") -> "Vocabulary":
        """The vocabulary of `text` as it is (tests and benchmarks; the vocab stage counts files)."""
        return cls.from_counts(char_counts([text.encode("utf-8")]), min_count, unicode_form)

    def __len__(self) -> int:
        return len(self.itos)

    @cached_property
    def sha256(self) -> str:
        """Identifies the id mapping: models refuse a vocabulary whose hash differs from their own."""
        return hashlib.sha256(json.dumps(self.itos, ensure_ascii=False).encode("utf-8")).hexdigest()

    @cached_property
    def _ids(self) -> np.ndarray:
        """The id of every code point, (CODE_POINTS,): <unk> but for the kept characters."""
        table = np.zeros(CODE_POINTS, dtype=self.dtype)
        table[[ord(c) for c in self.itos[1:]]] = np.arange(1, len(self))
        return table

    @property
    def dtype(self) -> np.dtype:
        """The smallest unsigned integer type that holds every id."""
        return np.min_scalar_type(len(self) - 1)

    @cached_property
    def _byte_ids(self) -> bytes:
        """The id of every byte as a character: a table for `bytes.translate`, when ids fit a byte."""
        return self._ids[:0x100].tobytes()

    def encode(self, text: str) -> np.ndarray:
        return self.encode_utf8(text.encode("utf-8"))

    def encode_utf8(self, data: bytes) -> np.ndarray:
        """The ids of valid UTF-8 `data`'s characters, (chars,)."""
        if self.dtype == np.uint8:  # translating bytes is several times faster than indexing
            ids = np.frombuffer(data.translate(self._byte_ids), np.uint8)
        else:
            ids = self._ids[np.frombuffer(data, np.uint8)]
        if data.isascii():
            return ids
        ids = ids[char_starts(data)]
        where, multi = multibyte(data)
        ids[where] = self._ids[multi]
        return ids

    def decode(self, ids: "np.ndarray | list[int]") -> str:
        return "".join(REPLACEMENT_CHAR if i == UNK_ID else self.itos[i] for i in np.asarray(ids).tolist())

    def normalize(self, text: str) -> str:
        """`text` in the normal form of the text the vocabulary was built from, as prompts should be."""
        return text if self.unicode_form == "none" else unicodedata.normalize(self.unicode_form, text)

    def unknown_chars(self, text: str) -> list[str]:
        """Distinct characters of `text` outside the vocabulary, in order of appearance."""
        return [c for c in dict.fromkeys(text) if c not in self._known]

    @cached_property
    def _known(self) -> frozenset[str]:
        return frozenset(self.itos[1:])

    def save(self, path: Path) -> None:
        VocabFile(
            itos=self.itos, counts=self.counts, unicode_form=self.unicode_form, sha256=self.sha256
        ).write(path)

    @classmethod
    def load(cls, path: Path) -> "Vocabulary":
        """The vocabulary in `path`, refused unless it is a charlm vocabulary whose hash matches."""
        file = VocabFile.read(path)
        vocab = cls(itos=file.itos, counts=file.counts, unicode_form=file.unicode_form)
        if not vocab.itos or vocab.itos[0] != UNK or len(vocab.counts) != len(vocab.itos):
            raise DataError(f"{path}: not a charlm vocabulary (itos must start with {UNK!r})")
        if file.sha256 != vocab.sha256:
            raise DataError(
                f"{path}: vocabulary hash {file.sha256!r} does not match its contents ({vocab.sha256})"
            )
        return vocab


class VocabFile(Record):
    """`vocab.json`: the id-to-character list, the training counts and the sha256 of the list."""

    itos: Annotated[tuple[str, ...], Field(strict=False)]  # JSON lists
    counts: Annotated[tuple[int, ...], Field(strict=False)]
    unicode_form: UnicodeForm
    sha256: str

    @model_validator(mode="before")
    @classmethod
    def _hash_was_sha256(cls, raw: Any) -> Any:
        # Files written before the sha256 was named so (registered versions among them) still load.
        if isinstance(raw, dict) and "hash" in raw and "sha256" not in raw:
            return {("sha256" if k == "hash" else k): v for k, v in raw.items()}
        return raw
