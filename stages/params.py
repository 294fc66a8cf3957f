"""Stage params: check the whole of params.yaml before any other stage does work. Every other stage reads only
its own sections. This one validates them all (unknown keys, types, bounds, rules across sections), and every
stage runs after it, so a mistake anywhere in the file fails `dvc repro` here, first. Its output lists the
sections checked: it changes only with the schema, so a params edit reruns nothing through it."""

from charlm.errors import run_cli
from charlm.files import write_json
from charlm.params.base import load_params
from charlm.params.pipeline import Params
from charlm.stage import stage_args


def main() -> None:
    args = stage_args(__doc__, "out")
    load_params(Params)
    write_json(args.out, {"checked": sorted(Params.model_fields)})


if __name__ == "__main__":
    run_cli(main)
