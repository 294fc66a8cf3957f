"""Stage fetch: obtain the raw corpus named by the `fetch` params into the raw data directory."""

import argparse
from pathlib import Path

from charlm.errors import run_cli
from charlm.fetch import fetch
from charlm.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="raw corpus directory (paths.raw)")
    args = parser.parse_args()
    params = load_params()
    for path in fetch(params.fetch, args.out):
        print(f"fetch: {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    run_cli(main)
