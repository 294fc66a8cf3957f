"""What every stage script shares: its command line, the paths that dvc.yaml hands it."""

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, TypeVar

from charlm.errors import DataError


class Named(Protocol):
    @property
    def name(self) -> str: ...  # the `models:` entry it is of


T = TypeVar("T", bound=Named)


def stage_args(doc: str | None, *paths: str, named: bool = False) -> argparse.Namespace:
    """Parse a required `--<path> PATH` for each of `paths` (dvc.yaml says what each one is) and,
    for a per-model stage, `--name NAME`."""
    parser = argparse.ArgumentParser(description=doc)
    if named:
        parser.add_argument("--name", required=True, help="a name under `models:` in params.yaml")
    for name in paths:
        parser.add_argument(f"--{name.replace('_', '-')}", type=Path, required=True)
    return parser.parse_args()


def of_models(records: Iterable[T], names: Iterable[str], stage: str) -> list[T]:
    """The record of each of the `models:` entries `names`, in that order; one without its record is
    a DataError naming the `stage` that writes it. Records of other entries (since removed from
    params.yaml) are passed over."""
    by_name = {record.name: record for record in records}
    missing = [name for name in names if name not in by_name]
    if missing:
        raise DataError(f"no {stage} output for {', '.join(missing)} (run {stage}@{missing[0]})")
    return [by_name[name] for name in names]
