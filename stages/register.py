"""Stage register: register the best model in the MLflow Model Registry and move `champion` fairly."""

import argparse
from pathlib import Path

from charlm import io
from charlm.errors import run_cli
from charlm.params import load_params
from charlm.registry import load_candidate, pick_best, register
from charlm.tracking import connect, stage_tags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--models", type=Path, required=True, help="directory of model directories (paths.models)"
    )
    parser.add_argument(
        "--eval-metrics", type=Path, required=True, help="directory of evaluation metrics JSON"
    )
    parser.add_argument("--out", type=Path, required=True, help="decision JSON")
    args = parser.parse_args()
    params = load_params()

    candidates = [
        load_candidate(name, args.models / name, args.eval_metrics / f"{name}.json") for name in params.models
    ]
    best = pick_best(candidates)
    client = connect()
    tags = {**stage_tags("register"), "charlm.model": best.name}
    gen = params.generate
    decision = register(
        client,
        best,
        params.register,
        params.tracking.experiment,
        tags,
        gen.options(),
        gen.max_request_chars,
        gen.prompts[0],
    )
    decision["registered_model"] = params.register.model_name
    decision["alias"] = params.register.alias
    io.write_json(args.out, decision)
    print(
        f"register: {best.name} -> {decision['registered_model']} v{decision['candidate_version']}: {decision['verdict']}"
    )
    print(
        f"register: models:/{decision['registered_model']}@{decision['alias']} is version {decision['champion_version']}"
    )


if __name__ == "__main__":
    run_cli(main)
