"""Stage register: register the best model in the MLflow Model Registry and move `champion` fairly."""

from charlm.data.report import DataReport
from charlm.errors import run_cli
from charlm.evaluation.report import EvalReport
from charlm.generation.samples import Samples
from charlm.params.base import TrackingConfig, load_params
from charlm.params.generation import GenerateConfig
from charlm.params.registry import RegistryConfig
from charlm.params.serving import LimitsConfig
from charlm.params.training import Models
from charlm.registry.register import register
from charlm.serving.interface import ServedSettings
from charlm.stage import of_models, stage_args
from charlm.tracking.runs import StageTracking


class Params(Models):
    registry: RegistryConfig
    generate: GenerateConfig
    limits: LimitsConfig
    tracking: TrackingConfig


def main() -> None:
    args = stage_args(__doc__, "eval_metrics", "data_report", "samples", "out")
    params = load_params(Params)
    cfg = params.registry

    reports = of_models(EvalReport.read_all(args.eval_metrics), params.models, "evaluate")
    best = min(reports, key=lambda report: report.standing.key)  # chosen on validation data
    (samples,) = of_models(Samples.read_all(args.samples), [best.name], "generate")
    # The model serves as the generate stage samples, unseeded: each request seeds its own.
    served = ServedSettings(
        sampling=params.generate.options().model_copy(update={"seed": None}), limits=params.limits
    )
    tracking = StageTracking.open(params.tracking, "register", best.name)
    decision = register(tracking, best, cfg, DataReport.read(args.data_report), samples.samples[0], served)
    decision.write(args.out)
    print(f"register: {best.name} -> {cfg.model_name} v{decision.version}: {decision.verdict}")
    champion = f"version {decision.champion_version}" if decision.champion_version else "unset"
    print(f"register: {cfg.alias_uri} is {champion}")


if __name__ == "__main__":
    run_cli(main)
