"""Stage fetch: obtain the raw corpus named by the `fetch` params into the raw data directory."""

from charlm.data.fetch import fetch
from charlm.errors import run_cli
from charlm.params.base import load_params
from charlm.params.data import FetchConfig
from charlm.records import Record
from charlm.stage import stage_args


class Params(Record):
    fetch: FetchConfig


def main() -> None:
    args = stage_args(__doc__, "out")
    params = load_params(Params)
    for path in fetch(params.fetch, args.out):
        print(f"fetch: {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    run_cli(main)
