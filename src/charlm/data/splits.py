"""Split cleaned documents into train/val/test so that no validation text is seen in training.

A multi-document corpus is split by whole documents: named explicitly in params, or drawn by a
seeded shuffle until each held-out split reaches its fraction of the characters. A single document
is split contiguously at line boundaries (train first, then val, then test), as the standard
tiny-shakespeare benchmark does.
"""

import random
from dataclasses import dataclass
from functools import cached_property

from charlm.data.corpus import Document
from charlm.errors import DataError
from charlm.params import PrepareConfig

SPLITS = ("train", "val", "test")
HELD_OUT = ("val", "test")  # never trained on: models are chosen on val and reported on test


@dataclass(frozen=True)
class Split:
    name: str
    documents: tuple[Document, ...]

    @cached_property
    def text(self) -> str:
        return "".join(d.text for d in self.documents)


def split_documents(docs: list[Document], cfg: PrepareConfig, seed: int) -> dict[str, Split]:
    parts = _split_lines(docs[0], cfg) if len(docs) == 1 else _split_by_document(docs, cfg, seed)
    return {name: Split(name, tuple(parts[name])) for name in SPLITS}


def _split_lines(doc: Document, cfg: PrepareConfig) -> dict[str, list[Document]]:
    if cfg.val_documents or cfg.test_documents:
        raise DataError("prepare.val_documents/test_documents need a corpus of several documents; it has one")
    text = doc.text
    n = len(text)

    def boundary(fraction: float) -> int:
        # First line start at or after the target offset, so no line straddles two splits.
        cut = text.find("\n", max(int(n * fraction) - 1, 0)) + 1
        return cut if cut > 0 else n

    train_end = boundary(1 - cfg.val_fraction - cfg.test_fraction)
    val_end = max(train_end, boundary(1 - cfg.test_fraction))
    pieces = {"train": text[:train_end], "val": text[train_end:val_end], "test": text[val_end:]}
    return {name: [Document(f"{doc.name}#{name}", piece)] if piece else [] for name, piece in pieces.items()}


def _split_by_document(docs: list[Document], cfg: PrepareConfig, seed: int) -> dict[str, list[Document]]:
    by_name = {d.name: d for d in docs}
    unknown = sorted((set(cfg.val_documents) | set(cfg.test_documents)) - set(by_name))
    if unknown:
        raise DataError(f"prepare.val_documents/test_documents name unknown documents: {unknown}")
    total = sum(len(d.text) for d in docs)
    explicit = {"val": list(cfg.val_documents), "test": list(cfg.test_documents)}
    pool = [d.name for d in docs if d.name not in explicit["val"] + explicit["test"]]
    random.Random(seed).shuffle(pool)
    chosen: dict[str, list[str]] = {}
    for name, fraction in (("test", cfg.test_fraction), ("val", cfg.val_fraction)):
        if explicit[name]:
            chosen[name] = explicit[name]
            continue
        chosen[name], size = [], 0
        while pool and size < fraction * total:
            doc = pool.pop()
            chosen[name].append(doc)
            size += len(by_name[doc].text)
    held_out = set(chosen["val"]) | set(chosen["test"])
    chosen["train"] = [d.name for d in docs if d.name not in held_out]
    return {name: [by_name[n] for n in sorted(chosen[name])] for name in SPLITS}


def check_lengths(splits: dict[str, Split], seq_len: int) -> None:
    """Every split must hold at least one training sequence (seq_len inputs + 1 target)."""
    for split in splits.values():
        size = len(split.text)
        if size < seq_len + 1:
            raise DataError(
                f"the {split.name} split has {size} characters, fewer than one training sequence"
                f" (train.seq_len + 1 = {seq_len + 1}); use a larger corpus or change the split fractions"
            )


def summary(splits: dict[str, Split]) -> dict[str, object]:
    """The prepare stage's metrics: sizes per split and which documents went where."""
    sizes = {
        name: {"chars": len(split.text), "lines": split.text.count("\n"), "documents": len(split.documents)}
        for name, split in splits.items()
    }
    return {
        **sizes,
        "assignment": {name: [d.name for d in split.documents] for name, split in splits.items()},
    }
