"""What every stage script shares: its command line, the paths that dvc.yaml hands it."""

import argparse
from pathlib import Path


def stage_args(doc: str | None, *paths: str, model: bool = False) -> argparse.Namespace:
    """Parse a required `--<path> PATH` for each of `paths` (dvc.yaml says what each one is) and,
    for a per-model stage, `--model NAME`."""
    parser = argparse.ArgumentParser(description=doc)
    if model:
        parser.add_argument("--model", required=True, help="a name under `models:` in params.yaml")
    for name in paths:
        parser.add_argument(f"--{name.replace('_', '-')}", type=Path, required=True)
    return parser.parse_args()
