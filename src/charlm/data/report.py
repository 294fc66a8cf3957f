"""The data report (`metrics/vocab.json`): the facts about the encoded splits that every later
stage needs, measured once by the vocab stage.

The corpus as fetched; each split's size, the sha256 of its `.npy` file (the one hash that says
which data a figure was measured on: training's fingerprint, the runs' datasets and tags, the
evaluation report, the registry, the model card) and its rate of `<unk>`; the vocabulary's size;
and the unigram and bigram baselines' bits per character on each held-out split, the reference
points every model's figures stand beside.
"""

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
