"""Model registry: register the chosen candidate once, and move the champion alias fairly.

The candidate is logged as a pyfunc model and registered once per distinct weights (a content
hash tags each version, so rerunning with nothing new adds no version); `alias.settle` moves the
alias to the best comparable version and `decision` says why it did or did not move. Each
registration writes the version's model card (`card`) as its description, and links the logged
model to its validation and test bpc, so the experiment's Models tab lists both.
"""

from typing import TYPE_CHECKING, Any

from charlm.data.splits import HELD_OUT
from charlm.generation.samples import Sample
from charlm.params import FetchConfig, RegisterConfig
from charlm.registry.alias import champion, number, settle, tagged
from charlm.registry.candidate import Candidate
from charlm.registry.card import model_card
from charlm.registry.decision import Decision, may_move, verdict
from charlm.serving.interface import ServedSettings
from charlm.serving.package import log_model
from charlm.tracking import tags as tag
from charlm.tracking.runs import model_run

if TYPE_CHECKING:
    from mlflow import MlflowClient


def _register_once(
    client: "MlflowClient",
    candidate: Candidate,
    cfg: RegisterConfig,
    served: ServedSettings,
    sample: Sample,
    experiment: str,
    tags: dict[str, str],
) -> tuple[Any, bool]:
    """The candidate's version, registered unless its weights already are; whether it is new.

    Two processes that register the same weights at once both create a version; the one that
    created the later version deletes it and takes the earlier, so each weights' version is unique.
    """
    import mlflow

    report, model_sha = candidate.report, candidate.model_sha256
    mine = tagged(client, cfg.model_name, tag.MODEL_SHA256, model_sha)
    if mine:
        return min(mine, key=number), False
    run_name = f"{candidate.name} (registration)"
    with model_run(client, candidate.info.mlflow_run_id, experiment, run_name, tags) as (run_id, _):
        logged = log_model(candidate.model_dir, run_id, served, sample.prompt)
        for split in HELD_OUT:
            client.log_metric(run_id, f"{split}_bpc", report.split(split).bpc, model_id=logged.model_id)
    # The figures are tags given at creation, so no process ever sees a version without them.
    version_tags = {tag.MODEL_SHA256: model_sha, tag.MODEL: candidate.name}
    version_tags[tag.split_sha256("train")] = report.train_sha256
    for split in HELD_OUT:
        version_tags[tag.split_sha256(split)] = report.split(split).sha256
        version_tags[tag.split_bpc(split)] = f"{report.split(split).bpc:.6f}"
    version = mlflow.register_model(
        logged.model_uri, cfg.model_name, await_registration_for=60, tags=version_tags
    )
    first = min(tagged(client, cfg.model_name, tag.MODEL_SHA256, model_sha), key=number)
    if number(first) != number(version):
        client.delete_model_version(cfg.model_name, version.version)
        return first, False
    return version, True


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
    is the generate stage's first sample of it, which the card quotes.

    Nothing is locked: other machines may register against the same server at the same moment, and
    `alias.settle` ends on the best version whatever the interleaving.
    """
    version, new_version = _register_once(client, candidate, cfg, served, sample, experiment, tags)
    before = champion(client, cfg)
    before_tags = dict(before.tags) if before else None
    after = (
        settle(client, cfg, candidate.report.val.sha256) if may_move(candidate, before_tags, cfg) else before
    )
    won = number(after) == number(version)
    reason = verdict(candidate, before_tags if won else dict(after.tags), cfg)
    client.set_model_version_tag(cfg.model_name, version.version, tag.DECISION, reason)
    decision = Decision(
        registered_model=cfg.model_name,
        alias=cfg.alias,
        candidate=candidate.name,
        version=number(version),
        new_version=new_version,
        promoted=won and (before is None or number(before) != number(version)),
        verdict=reason,
        champion_before=number(before) if before else None,
        champion=number(after),
    )
    card = model_card(candidate, decision, fetch, sample, served)
    client.update_model_version(cfg.model_name, version.version, description=card)
    return decision
