"""The character vocabulary: built from the training split only, saved as JSON with a content hash.

Id 0 is `<unk>`, which every character outside the vocabulary maps to; ids 1.. are the kept
characters in code-point order. Encoding is vectorised (a sorted code-point table and one
`searchsorted`), so a megabyte of text encodes in milliseconds.
"""

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from charlm.errors import DataError
from charlm.files import write_json

UNK = "<unk>"
UNK_ID = 0
REPLACEMENT_CHAR = "\ufffd"  # how <unk> is decoded, keeping one character per id


@dataclass(frozen=True)
class Vocabulary:
    itos: tuple[str, ...]  # itos[0] is UNK, then single characters sorted by code point
    counts: tuple[int, ...]  # training-split count of each entry (for UNK: the characters it replaced)

    @classmethod
    def build(cls, text: str, min_count: int = 1) -> "Vocabulary":
        counter = Counter(text)
        kept = sorted(c for c, n in counter.items() if n >= min_count)
        if not kept:
            raise DataError(
                f"no character occurs at least vocab.min_count={min_count} times in the training split"
            )
        unk_count = sum(n for c, n in counter.items() if n < min_count)
        return cls(itos=(UNK, *kept), counts=(unk_count, *(counter[c] for c in kept)))

    def __len__(self) -> int:
        return len(self.itos)

    @cached_property
    def hash(self) -> str:
        """Identifies the id mapping: models refuse a vocabulary whose hash differs from their own."""
        return hashlib.sha256(json.dumps(self.itos, ensure_ascii=False).encode("utf-8")).hexdigest()

    @cached_property
    def _codepoints(self) -> np.ndarray:
        return np.array([ord(c) for c in self.itos[1:]], dtype=np.uint32)  # sorted, so searchsorted works

    @property
    def dtype(self) -> np.dtype:
        """The smallest unsigned integer type that holds every id."""
        for dtype in (np.uint8, np.uint16):
            if len(self) <= np.iinfo(dtype).max + 1:
                return np.dtype(dtype)
        return np.dtype(np.uint32)

    def encode(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")  # one code point per character
        pos = np.searchsorted(self._codepoints, codes)
        pos_in = np.minimum(pos, len(self._codepoints) - 1)
        known = self._codepoints[pos_in] == codes
        return np.where(known, pos + 1, UNK_ID).astype(self.dtype)

    def decode(self, ids: "np.ndarray | list[int]") -> str:
        return "".join(REPLACEMENT_CHAR if i == UNK_ID else self.itos[i] for i in np.asarray(ids).tolist())

    def unknown_chars(self, text: str) -> list[str]:
        """Distinct characters of `text` outside the vocabulary, in order of appearance."""
        return [c for c in dict.fromkeys(text) if c not in self._known]

    @cached_property
    def _known(self) -> frozenset[str]:
        return frozenset(self.itos[1:])

    def to_json(self) -> dict[str, object]:
        return {"itos": list(self.itos), "counts": list(self.counts), "hash": self.hash}

    def save(self, path: Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def from_json(cls, data: dict[str, object], source: str) -> "Vocabulary":
        try:
            vocab = cls(itos=tuple(data["itos"]), counts=tuple(data["counts"]))  # type: ignore[arg-type]
        except (KeyError, TypeError) as err:
            raise DataError(f"{source}: not a charlm vocabulary ({err})") from None
        if not vocab.itos or vocab.itos[0] != UNK or len(vocab.counts) != len(vocab.itos):
            raise DataError(f"{source}: not a charlm vocabulary (itos must start with {UNK!r})")
        if data.get("hash") != vocab.hash:
            raise DataError(
                f"{source}: vocabulary hash {data.get('hash')!r} does not match its contents ({vocab.hash})"
            )
        return vocab

    @classmethod
    def load(cls, path: Path) -> "Vocabulary":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise DataError(f"{path}: cannot read vocabulary ({err})") from None
        if not isinstance(data, dict):
            raise DataError(f"{path}: not a charlm vocabulary")
        return cls.from_json(data, str(path))


def oov_rate(ids: np.ndarray) -> float:
    return float(np.count_nonzero(ids == UNK_ID) / max(len(ids), 1))
