"""The encoded splits: one `.npy` array of token ids per split, and the hash that names each.

Whatever says which data a figure was measured on (training's resume fingerprint and run tags,
the evaluation report, the registry's fairness check, the model card) uses `sha256`: the hash of
the split's `.npy` file as the vocab stage wrote it.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlm.errors import DataError
from charlm.files import replace_dir, sha256_file, write_npy


@dataclass(frozen=True)
class EncodedSplits:
    directory: Path

    def path(self, split: str) -> Path:
        return self.directory / f"{split}.npy"

    def load(self, split: str) -> np.ndarray:
        try:
            return np.load(self.path(split), allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DataError(
                f"{self.path(split)}: cannot read the encoded split ({err}); run the vocab stage"
            ) from None

    def sha256(self, split: str) -> str:
        return sha256_file(self.path(split))

    def write(self, encoded: dict[str, np.ndarray]) -> None:
        """Replace the directory with one file per split, all or nothing."""
        with replace_dir(self.directory) as staging:
            for split, ids in encoded.items():
                write_npy(staging / f"{split}.npy", ids)
