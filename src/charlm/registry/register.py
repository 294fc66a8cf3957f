"""Model registry: register the chosen candidate once, and move the champion alias fairly.

The candidate is logged as a pyfunc model and registered once per distinct weights (a content
hash tags each version, so rerunning with nothing new adds no version); `decision.decide` says
whether the alias moves. Each registration writes the version's model card (`card`) as its
description, and links the logged model to its validation and test bpc, so the experiment's
Models tab lists both.
"""

from typing import TYPE_CHECKING, Any

from charlm.data.splits import HELD_OUT
from charlm.generation.samples import Sample
from charlm.params import FetchConfig, RegisterConfig
from charlm.registry.candidate import Candidate
from charlm.registry.card import model_card
from charlm.registry.decision import Decision, decide
from charlm.serving.interface import ServedSettings
from charlm.serving.package import log_model
from charlm.tracking import tags as tag
from charlm.tracking.runs import model_run
from charlm.tracking.store import store_lock

if TYPE_CHECKING:
    from mlflow import MlflowClient


def _find_version(client: "MlflowClient", name: str, model_sha: str) -> Any | None:
    for version in client.search_model_versions(f"name='{name}'"):
        if version.tags.get(tag.MODEL_SHA256) == model_sha:
            return version
    return None


def _champion(client: "MlflowClient", cfg: RegisterConfig) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(cfg.model_name, cfg.alias)
    except MlflowException:
        return None


def register(
    client: "MlflowClient",
    candidate: Candidate,
    cfg: RegisterConfig,
    served: ServedSettings,
    fetch: FetchConfig,
    sample: Sample,
    experiment: str,
    tags: dict[str, str],
) -> Decision:
    """Register the candidate (once), move the alias if it wins, and write its model card; `sample`
    is the generate stage's first sample of it, which the card quotes."""
    import mlflow

    report, model_sha = candidate.report, candidate.model_sha256
    # One step from lookup to alias: queued experiments register concurrently, and two of them must
    # neither add the same weights twice nor promote a worse model.
    with store_lock(client.tracking_uri):
        version = _find_version(client, cfg.model_name, model_sha)
        new_version = version is None
        if version is None:
            run_name = f"{candidate.name} (registration)"
            with model_run(client, candidate.info.mlflow_run_id, experiment, run_name, tags) as (run_id, _):
                logged = log_model(candidate.model_dir, run_id, served, sample.prompt)
                for split in HELD_OUT:
                    client.log_metric(
                        run_id, f"{split}_bpc", report.split(split).bpc, model_id=logged.model_id
                    )
            version = mlflow.register_model(logged.model_uri, cfg.model_name, await_registration_for=60)
            version_tags = {tag.MODEL_SHA256: model_sha, tag.MODEL: candidate.name}
            version_tags[tag.split_sha256("train")] = report.train_sha256
            for split in HELD_OUT:
                version_tags[tag.split_sha256(split)] = report.split(split).sha256
                version_tags[tag.split_bpc(split)] = f"{report.split(split).bpc:.6f}"
            for key, value in version_tags.items():
                client.set_model_version_tag(cfg.model_name, version.version, key, value)
        champion = _champion(client, cfg)
        promote, reason = decide(candidate, dict(champion.tags) if champion else None, cfg)
        if promote:
            client.set_registered_model_alias(cfg.model_name, cfg.alias, version.version)
        client.set_model_version_tag(cfg.model_name, version.version, tag.DECISION, reason)
        decision = Decision(
            registered_model=cfg.model_name,
            alias=cfg.alias,
            candidate=candidate.name,
            version=int(version.version),
            new_version=new_version,
            promoted=promote,
            verdict=reason,
            champion_before=int(champion.version) if champion else None,
            champion=int((version if promote else champion).version),
        )
        card = model_card(candidate, decision, fetch, sample, served)
        client.update_model_version(cfg.model_name, version.version, description=card)
    return decision
