"""The encoded splits: one `.npy` array of token ids per split. The vocab stage writes them a chunk at a time,
and every reader maps them (`np.load(mmap_mode="r")`): training, evaluation and every data-parallel rank share
the page cache's one copy instead of each loading its own. Each file's sha256 names its split in the data
report (`charlm.data.report`); it is hashed, and the split's n-grams counted, as it is written."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlm.data.chunks import ignore, line_chunks, utf8_chars
from charlm.data.ngrams import NgramCounts
from charlm.data.report import SplitData
from charlm.data.vocab import UNK_ID, Vocabulary
from charlm.errors import DataError
from charlm.files import HashedWriter, Worker, replace_dir


@dataclass(frozen=True)
class EncodedSplits:
    directory: Path  # the vocab stage's output: one array per split

    def path(self, split: str) -> Path:
        return self.directory / f"{split}.npy"

    def load(self, split: str) -> np.ndarray:
        """The split's ids, mapped from its file (read-only), not copied into memory."""
        try:
            return np.load(self.path(split), mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DataError(
                f"{self.path(split)}: cannot read the encoded split ({err}); run the vocab stage"
            ) from None

    def write(
        self,
        texts: dict[str, Path],
        vocab: Vocabulary,
        order: int,
        on_read: Callable[[int], object] = ignore,
        known: dict[str, int] | None = None,
    ) -> dict[str, tuple[SplitData, NgramCounts]]:
        """Encode each split's text file (valid UTF-8, as the prepare stage writes it), all or nothing;
        returns what each split holds and its n-gram counts up to `order`, gathered on the way.
        `known`: the lengths in characters of the splits the caller has counted already."""
        written = {}
        with replace_dir(self.directory) as staging:
            for split, path in texts.items():
                chars = (known or {}).get(split)
                if chars is None:  # its length first: the array's shape goes in the header
                    with open(path, "rb") as f:
                        chars = sum(utf8_chars(data) for _, data in line_chunks(f, on_read=on_read))
                # What np.save writes, a chunk at a time: memory holds a few chunks, not the split.
                # Encoding, counting and writing (with the hash) each take a thread: two cores, busy.
                counts = NgramCounts(len(vocab), order)
                out = HashedWriter(staging / self.path(split).name)
                with out, Worker(counts.add) as counting, open(path, "rb") as f:
                    header = {"descr": np.lib.format.dtype_to_descr(vocab.dtype), "fortran_order": False}
                    np.lib.format.write_array_header_1_0(out, {**header, "shape": (chars,)})
                    for _, data in line_chunks(f, on_read=on_read):
                        ids = vocab.encode_utf8(data)
                        out.write(ids)
                        counting.put(ids)
                unknown = int(counts.unigram()[UNK_ID])
                data = SplitData(chars=chars, sha256=out.sha256, oov_rate=unknown / max(chars, 1))
                written[split] = data, counts
        return written
