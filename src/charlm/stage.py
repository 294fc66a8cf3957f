"""What every stage script shares: its command line, the paths that dvc.yaml hands it."""

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, TypeVar

from charlm.errors import DataError


class OfModel(Protocol):
    @property
    def model(self) -> str: ...


T = TypeVar("T", bound=OfModel)


def stage_args(doc: str | None, *paths: str, model: bool = False) -> argparse.Namespace:
    """Parse a required `--<path> PATH` for each of `paths` (dvc.yaml says what each one is) and,
    for a per-model stage, `--model NAME`."""
    parser = argparse.ArgumentParser(description=doc)
    if model:
        parser.add_argument("--model", required=True, help="a name under `models:` in params.yaml")
    for name in paths:
        parser.add_argument(f"--{name.replace('_', '-')}", type=Path, required=True)
    return parser.parse_args()


def of_models(records: Iterable[T], models: Iterable[str], stage: str) -> list[T]:
    """The record of each of `models` (records name their model), in that order; one without its
    record is a DataError naming the `stage` that writes it. Records of other models (left by an
    entry since removed from params.yaml) are passed over."""
    by_model = {record.model: record for record in records}
    missing = [name for name in models if name not in by_model]
    if missing:
        raise DataError(f"no {stage} output for {', '.join(missing)} (run {stage}@{missing[0]})")
    return [by_model[name] for name in models]
