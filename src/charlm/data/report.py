"""The data report (`metrics/data.json`), measured once by the vocab stage: each split's size, `<unk>`
rate and sha256 (the one hash that names the data a figure was measured on), the vocabulary's size,
and the unigram and bigram baselines on each held-out split."""

import json
from pathlib import Path

from charlm.records import Record


class SplitData(Record):
    chars: int
    sha256: str  # of the split's .npy file
    oov_rate: float  # the share of <unk> ids


class DataReport(Record):
    corpus: str  # as people name it (`FetchConfig.describe`)
    vocab_size: int
    splits: dict[str, SplitData]  # by name in SPLITS
    baselines: dict[str, dict[str, float]]  # bpc by baseline name, then held-out split

    def sha256(self, split: str) -> str:
        return self.splits[split].sha256

    def source(self, path: Path) -> str:
        """Where an encoded split comes from, as a dataset's source: the corpus, and its file in
        the workspace (DVC's to fetch)."""
        return json.dumps({"corpus": self.corpus, "path": path.as_posix()})
