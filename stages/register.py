"""Stage register: register the best model in the MLflow Model Registry and move `champion` fairly."""

import dataclasses

from charlm import io
from charlm.errors import run_cli
from charlm.params import load_params
from charlm.registry import alias_uri, load_candidate, pick_best, register
from charlm.stage import stage_args
from charlm.tracking import connect, stage_tags


def main() -> None:
    args = stage_args(__doc__, "models", "eval_metrics", "out")
    params = load_params()
    cfg = params.register

    candidates = [
        load_candidate(name, args.models / name, args.eval_metrics / f"{name}.json") for name in params.models
    ]
    best = pick_best(candidates)
    client = connect()
    tags = {**stage_tags("register"), "charlm.model": best.name}
    decision = register(client, best, cfg, params.generate, params.fetch, params.tracking.experiment, tags)
    report = {"registered_model": cfg.model_name, "alias": cfg.alias, **dataclasses.asdict(decision)}
    io.write_json(args.out, report)
    print(f"register: {best.name} -> {cfg.model_name} v{decision.version}: {decision.verdict}")
    print(f"register: {alias_uri(cfg)} is version {decision.champion}")


if __name__ == "__main__":
    run_cli(main)
