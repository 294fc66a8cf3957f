"""Stage register: register the best model in the MLflow Model Registry and move `champion` fairly."""

from charlm.errors import run_cli
from charlm.generation.samples import Samples
from charlm.params import load_params
from charlm.registry.candidate import load_candidate, pick_best
from charlm.registry.register import register
from charlm.serving.interface import ServedSettings
from charlm.stage import stage_args
from charlm.tracking import tags as tag
from charlm.tracking.store import connect


def main() -> None:
    args = stage_args(__doc__, "models", "eval_metrics", "samples", "out")
    params = load_params()
    cfg = params.register

    candidates = [
        load_candidate(name, args.models / name, args.eval_metrics / f"{name}.json") for name in params.models
    ]
    best = pick_best(candidates)
    sample = Samples.read(args.samples / f"{best.name}.txt").samples[0]
    # The model serves as the generate stage samples, unseeded: each request seeds its own.
    served = ServedSettings(
        sampling=params.generate.options().model_copy(update={"seed": None}), limits=params.serve
    )
    client = connect()
    tags = tag.stage_tags("register", best.name)
    decision = register(client, best, cfg, served, params.fetch, sample, params.tracking.experiment, tags)
    decision.write(args.out)
    print(f"register: {best.name} -> {cfg.model_name} v{decision.version}: {decision.verdict}")
    print(f"register: {cfg.alias_uri} is version {decision.champion}")


if __name__ == "__main__":
    run_cli(main)
