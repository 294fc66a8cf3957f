"""Split cleaned documents into train/val/test so that no validation text is seen in training: a
corpus of several documents by whole documents (named in params, or drawn by a seeded shuffle up to
each held-out split's share of the characters); a single document contiguously at line starts,
train first, then val, then test, as the usual tiny-shakespeare split does."""

import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from charlm.data.chunks import CHUNK_BYTES, line_chunks, utf8_chars
from charlm.data.corpus import Document
from charlm.data.layout import SPLITS
from charlm.errors import DataError
from charlm.params.data import PrepareConfig


@dataclass(frozen=True)
class Split:
    name: str
    documents: tuple[Document, ...]

    @property
    def chars(self) -> int:
        return sum(d.chars for d in self.documents)

    @property
    def lines(self) -> int:
        return sum(d.lines for d in self.documents)

    def move_to(self, path: Path) -> None:
        """Concatenate the documents' files into `path`, using them up: one is moved, not copied."""
        if len(self.documents) == 1:
            shutil.move(self.documents[0].path, path)
            return
        with open(path, "wb") as out:
            for doc in self.documents:
                with open(doc.path, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)


def split_documents(
    docs: list[Document], cfg: PrepareConfig, workdir: Path, chunk_bytes: int = CHUNK_BYTES
) -> dict[str, Split]:
    """The splits; one document is cut into pieces written in `workdir`, read `chunk_bytes` at a time."""
    if len(docs) == 1:
        parts = _split_lines(docs[0], cfg, workdir, chunk_bytes)
    else:
        parts = _split_by_document(docs, cfg)
    return {name: Split(name, tuple(parts[name])) for name in SPLITS}


def _split_lines(
    doc: Document, cfg: PrepareConfig, workdir: Path, chunk_bytes: int
) -> dict[str, list[Document]]:
    if cfg.val_documents or cfg.test_documents:
        raise DataError("prepare.val_documents/test_documents need a corpus of several documents; it has one")
    # Train ends at the first line start at or after its share of the characters, val likewise, so
    # no line straddles two splits. Cuts not found by the end of the text are at its end.
    shares = (1 - cfg.val_fraction - cfg.test_fraction, 1 - cfg.test_fraction)
    train_end, val_end = _cuts(doc, [max(int(doc.chars * s) - 1, 0) for s in shares], chunk_bytes)
    paths = {name: workdir / f"{doc.path.stem}.{name}.txt" for name in SPLITS}
    sizes = {}  # chars, lines
    with open(doc.path, "rb") as f:
        f.seek(train_end)
        sizes["val"] = _copy(f, val_end - train_end, paths["val"], chunk_bytes)
        sizes["test"] = _copy(f, doc.path.stat().st_size - val_end, paths["test"], chunk_bytes)
    # Train is the document's own file, cut short: most of the corpus is not copied.
    os.truncate(doc.path, train_end)
    doc.path.rename(paths["train"])
    sizes["train"] = (
        doc.chars - sizes["val"][0] - sizes["test"][0],
        doc.lines - sizes["val"][1] - sizes["test"][1],
    )
    return {
        name: [Document(f"{doc.name}#{name}", paths[name], *sizes[name])] if sizes[name][0] else []
        for name in SPLITS
    }


def _cuts(doc: Document, targets: list[int], chunk_bytes: int) -> list[int]:
    """Where each target character's line ends, in bytes (the document's end if it has no newline
    after), read `chunk_bytes` at a time; a chunk is decoded only where a cut falls."""
    cuts: list[int | None] = [None] * len(targets)
    chars = done = 0  # before `data`: in characters, in bytes
    with open(doc.path, "rb") as f:
        for _, data in line_chunks(f, chunk_bytes):
            end, text = chars + utf8_chars(data), None
            for i, target in enumerate(targets):
                if cuts[i] is None and target < end:
                    text = text if text is not None else data.decode("utf-8")
                    if (found := text.find("\n", max(target - chars, 0))) >= 0:
                        cuts[i] = done + len(text[: found + 1].encode("utf-8"))
            if None not in cuts:
                break
            chars, done = end, done + len(data)
        size = f.seek(0, os.SEEK_END)
    return [size if cut is None else cut for cut in cuts]


def _copy(source: BinaryIO, size: int, path: Path, chunk_bytes: int) -> tuple[int, int]:
    """Copy the next `size` bytes of `source` to `path`; their characters and lines."""
    chars = lines = 0
    with open(path, "wb") as out:
        while size > 0:
            data = source.read(min(chunk_bytes, size))
            out.write(data)
            chars += utf8_chars(data)  # counts the characters' first bytes: any cut is fine
            lines += data.count(b"\n")
            size -= len(data)
    return chars, lines


def _split_by_document(docs: list[Document], cfg: PrepareConfig) -> dict[str, list[Document]]:
    by_name = {d.name: d for d in docs}
    if unknown := sorted((set(cfg.val_documents) | set(cfg.test_documents)) - set(by_name)):
        raise DataError(f"prepare.val_documents/test_documents name unknown documents: {unknown}")
    total = sum(d.chars for d in docs)
    explicit = {"val": list(cfg.val_documents), "test": list(cfg.test_documents)}
    pool = [d.name for d in docs if d.name not in explicit["val"] + explicit["test"]]
    random.Random(cfg.seed).shuffle(pool)
    chosen: dict[str, list[str]] = {}
    for name, fraction in (("test", cfg.test_fraction), ("val", cfg.val_fraction)):
        if explicit[name]:
            chosen[name] = explicit[name]
            continue
        chosen[name], size = [], 0
        while pool and size < fraction * total:
            doc = pool.pop()
            chosen[name].append(doc)
            size += by_name[doc].chars
    held_out = set(chosen["val"]) | set(chosen["test"])
    chosen["train"] = [d.name for d in docs if d.name not in held_out]
    return {name: [by_name[n] for n in sorted(chosen[name])] for name in SPLITS}


def check_lengths(splits: dict[str, Split], seq_len: int) -> None:
    """Every split must hold at least one training sequence (seq_len inputs + 1 target)."""
    for split in splits.values():
        if split.chars < seq_len + 1:
            raise DataError(
                f"the {split.name} split has {split.chars} characters, fewer than one training sequence"
                f" (train.seq_len + 1 = {seq_len + 1}); use a larger corpus or change the split fractions"
            )


def prepare_metrics(splits: dict[str, Split]) -> dict[str, object]:
    """The prepare stage's metrics: sizes per split and which documents went where."""
    metrics: dict[str, object] = {
        name: {"chars": split.chars, "lines": split.lines, "documents": len(split.documents)}
        for name, split in splits.items()
    }
    metrics["assignment"] = {name: [d.name for d in split.documents] for name, split in splits.items()}
    return metrics
