"""The data report (`metrics/vocab.json`): the facts about the encoded splits that every later
stage needs, measured once by the vocab stage.

Each split's size, the sha256 of its `.npy` file (the one hash that says which data a figure was
measured on: training's fingerprint and run tags, the evaluation report, the registry, the model
card) and its rate of `<unk>`; the vocabulary's size; and the unigram and bigram baselines' bits
per character on each held-out split, the reference points every model's figures stand beside.
"""

from charlm.records import Record


class SplitData(Record):
    chars: int
    sha256: str  # of the split's .npy file
    oov_rate: float  # the share of <unk> ids


class DataReport(Record):
    vocab_size: int
    splits: dict[str, SplitData]  # by name in SPLITS
    baselines: dict[str, dict[str, float]]  # bpc by baseline name, then held-out split

    def sha256(self, split: str) -> str:
        return self.splits[split].sha256
