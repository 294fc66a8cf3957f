"""Model registry: log and register the chosen candidate once per weights and validation data, write
its model card (`card`) as the version's description, settle the champion alias (`alias`) and say
why it did or did not move (`decision`)."""

from pathlib import Path
from typing import Any

from charlm.data.layout import HELD_OUT
from charlm.data.report import DataReport
from charlm.evaluation.ranking import bpc_text
from charlm.evaluation.report import EvalReport
from charlm.generation.samples import Sample
from charlm.model.directory import model_sha256, read_info
from charlm.params.registry import RegistryConfig
from charlm.registry.alias import champion, number, settle, standing, standing_tags, tagged
from charlm.registry.card import model_card
from charlm.registry.decision import Decision, verdict
from charlm.serving.interface import ServedSettings
from charlm.serving.package import log_model
from charlm.tracking import tags as tag
from charlm.tracking.runs import StageTracking
from charlm.tracking.store import first_write


def _register_once(
    tracking: StageTracking,
    report: EvalReport,
    cfg: RegistryConfig,
    train_sha256: str,
    served: ServedSettings,
    prompt: str,
) -> tuple[Any, bool]:
    """The version of the model `report` scored, registered unless its weights already are with figures on the
    same validation data; whether it is new. A version's figures never change: the same weights scored on
    other validation data are a version of their own. Two processes that register the same model at once both
    create a version; the one that created the later version deletes it and takes the earlier, so each model's
    version is unique."""
    import mlflow

    client, model_dir = tracking.client, Path(report.model_dir)
    weights = model_sha256(model_dir)

    def twins() -> list[Any]:
        same = tagged(client, cfg.model_name, tag.MODEL_SHA256, weights)
        return [v for v in same if v.tags.get(tag.split_sha256("val")) == report.val.sha256]

    if mine := twins():
        return min(mine, key=number), False
    run_name = f"{report.name} (registration)"
    with tracking.model_run(read_info(model_dir).mlflow_run_id, run_name) as (run_id, _):
        logged = log_model(model_dir, run_id, served, prompt)
        for split in HELD_OUT:
            client.log_metric(run_id, f"{split}_bpc", report.split(split).bpc, model_id=logged.model_id)
    # The figures are tags given at creation, so no process ever sees a version without them.
    version_tags = {tag.MODEL_SHA256: weights, tag.NAME: report.name, **standing_tags(report.standing)}
    version_tags[tag.split_sha256("train")] = train_sha256
    version_tags[tag.split_sha256("test")] = report.test.sha256
    version_tags[tag.split_bpc("test")] = bpc_text(report.test.bpc)
    version = mlflow.register_model(
        logged.model_uri, cfg.model_name, await_registration_for=60, tags=version_tags
    )
    first = min(twins(), key=number)
    if number(first) != number(version):
        client.delete_model_version(cfg.model_name, version.version)
        return first, False
    return version, True


def logged_settings(version: Any) -> ServedSettings:
    """The settings a registered version serves with: those logged with it, whatever params say now."""
    from mlflow.models import Model

    return ServedSettings.parse(Model.load(version.source).flavors["python_function"]["config"])


def register(
    tracking: StageTracking,
    report: EvalReport,
    cfg: RegistryConfig,
    data: DataReport,
    sample: Sample,
    served: ServedSettings,
) -> Decision:
    """Register the model `report` scored (once), serving with `served`, move the alias if it wins, and
    write its model card, which quotes `sample` and the settings its version was logged with. Nothing is
    locked: other machines may register against the same server at the same moment, and `alias.settle`
    ends on the best version whatever the interleaving."""
    client = tracking.client
    version, new_version = _register_once(tracking, report, cfg, data.sha256("train"), served, sample.prompt)
    logged = served if new_version else logged_settings(version)  # read before the alias can move
    mine = report.standing
    before = champion(client, cfg)
    after = settle(client, cfg, mine.val_sha256, standing(before.tags).val_sha256 if before else None)
    won = after is not None and number(after) == number(version)
    against = before if won else after
    same = against is not None and number(against) == number(version)
    reason = verdict(mine, standing(against.tags) if against else None, same, cfg)
    first_write(lambda: client.set_model_version_tag(cfg.model_name, version.version, tag.DECISION, reason))
    decision = Decision(
        registered_model=cfg.model_name,
        alias=cfg.alias,
        candidate=report.name,
        version=number(version),
        new_version=new_version,
        promoted=won and (before is None or number(before) != number(version)),
        verdict=reason,
        version_before=number(before) if before else None,
        champion_version=number(after) if after else None,
    )
    client.update_model_version(
        cfg.model_name,
        version.version,
        description=model_card(report, decision, data, sample, logged),
    )
    return decision
