"""The splits and the files the prepare stage writes them to: names every stage shares."""

from pathlib import Path

SPLITS = ("train", "val", "test")
HELD_OUT = ("val", "test")  # never trained on: models are chosen on val and reported on test


def prepared_file(directory: Path, split: str) -> Path:
    """The prepare stage's cleaned UTF-8 text of `split`, in its output directory."""
    return directory / f"{split}.txt"
