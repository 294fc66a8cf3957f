"""The splits and the files the prepare stage writes them to: names every stage shares."""

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

SPLITS = ("train", "val", "test")
HELD_OUT = ("val", "test")  # never trained on: models are chosen on val and reported on test


@dataclass(frozen=True)
class PreparedSplits:
    """The prepare stage's directory: one cleaned UTF-8 text file per split (`EncodedSplits`
    holds the vocab stage's, one array per split)."""

    directory: Path
    suffix: ClassVar[str] = ".txt"

    def path(self, split: str) -> Path:
        return self.directory / f"{split}{self.suffix}"
