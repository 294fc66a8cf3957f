"""Model registry: choose the best model, register it once, and move the champion alias fairly.

Models are chosen on validation data only. The best candidate has the lowest validation bits per
char (ties: fewer parameters). It is logged as a pyfunc model and registered once per distinct
weights (a content hash tags each version, so rerunning with nothing new adds no version). The
alias moves only when the candidate beats the champion's validation bpc on the same validation data
(same val-split hash); otherwise the champion stays and the decision says why. The test bpc is
tagged beside it for reporting and never decides, so a sweep cannot select on the test split.
Each registration writes the version's model card (`charlm.card`) as its description, and links
the logged model to its validation and test bpc, so the experiment's Models tab lists both.
"""

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charlm import checkpoint
from charlm.baselines import BASELINES, baseline_key
from charlm.errors import CharlmError
from charlm.params import FetchConfig, GenerateConfig, RegisterConfig
from charlm.tracking import model_run, store_lock

if TYPE_CHECKING:
    from mlflow import MlflowClient

TAG_MODEL_SHA = "charlm.model_sha256"
TAG_VAL_SHA = "charlm.val_sha256"
TAG_VAL_BPC = "charlm.val_bpc"
TAG_TEST_SHA = "charlm.test_sha256"
TAG_TEST_BPC = "charlm.test_bpc"
TAG_DECISION = "charlm.decision"


def alias_uri(cfg: RegisterConfig) -> str:
    """The model URI that follows the alias, e.g. `models:/charlm@champion`."""
    return f"models:/{cfg.model_name}@{cfg.alias}"


@dataclass(frozen=True)
class Candidate:
    name: str
    model_dir: Path
    val_bpc: float
    test_bpc: float
    num_params: int
    train_sha256: str
    val_sha256: str
    test_sha256: str
    run_id: str | None
    baselines: dict[str, float] = field(hash=False)  # by `baseline_key`, val and test

    @cached_property
    def model_sha256(self) -> str:
        """Identifies the weights, architecture and vocabulary (not the metrics) of the model."""
        config = checkpoint.read_config(self.model_dir)
        digest = hashlib.sha256(json.dumps([config["model"], config["vocab_hash"]], sort_keys=True).encode())
        digest.update((self.model_dir / checkpoint.MODEL_FILE).read_bytes())
        return digest.hexdigest()


def load_candidate(name: str, model_dir: Path, eval_metrics: Path) -> Candidate:
    try:
        report = json.loads(eval_metrics.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CharlmError(
            f"{eval_metrics}: cannot read evaluation metrics ({err}); run evaluate@{name}"
        ) from None
    config = checkpoint.read_config(model_dir)
    return Candidate(
        name=name,
        model_dir=model_dir,
        val_bpc=float(report["val_bpc"]),
        test_bpc=float(report["test_bpc"]),
        num_params=int(report["num_params"]),
        train_sha256=str(report["train_sha256"]),
        val_sha256=str(report["val_sha256"]),
        test_sha256=str(report["test_sha256"]),
        run_id=config.get("mlflow_run_id"),
        baselines={
            key: float(report[key])
            for key in (baseline_key(name, split) for name in BASELINES for split in ("val", "test"))
        },
    )


def pick_best(candidates: list[Candidate]) -> Candidate:
    if not candidates:
        raise CharlmError("no models to register")
    return min(candidates, key=lambda c: (c.val_bpc, c.num_params))


def decide(
    candidate: Candidate, champion_tags: dict[str, str] | None, cfg: RegisterConfig
) -> tuple[bool, str]:
    """Whether the candidate becomes champion, and why."""
    if champion_tags is None:
        return True, "no champion yet: the candidate becomes the first"
    if champion_tags.get(TAG_MODEL_SHA) == candidate.model_sha256:
        return False, "the candidate already is the champion"
    if champion_tags.get(TAG_VAL_SHA) != candidate.val_sha256:
        if cfg.on_new_val_data == "promote":
            return (
                True,
                "the champion was validated on other data; promoted (register.on_new_val_data: promote)",
            )
        return False, (
            "the champion was validated on other data, so the two are not comparable; champion kept"
            " (set register.on_new_val_data: promote to replace it)"
        )
    champion_bpc = float(champion_tags[TAG_VAL_BPC])
    verdict = f"val bpc {candidate.val_bpc:.4f} {{}} the champion's {champion_bpc:.4f}"
    if candidate.val_bpc < champion_bpc:
        return True, verdict.format("beats")
    return False, verdict.format("does not beat") + "; champion kept"


def _find_version(client: "MlflowClient", name: str, model_sha: str) -> Any | None:
    for version in client.search_model_versions(f"name='{name}'"):
        if version.tags.get(TAG_MODEL_SHA) == model_sha:
            return version
    return None


def _champion(client: "MlflowClient", cfg: RegisterConfig) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(cfg.model_name, cfg.alias)
    except MlflowException:
        return None


@dataclass(frozen=True)
class Decision:
    """What registration did: the candidate's version, and whether it is now the champion."""

    candidate: str
    version: int
    new_version: bool
    promoted: bool
    verdict: str
    champion_before: int | None
    champion: int


def register(
    client: "MlflowClient",
    candidate: Candidate,
    cfg: RegisterConfig,
    generate: GenerateConfig,
    fetch: FetchConfig,
    experiment: str,
    tags: dict[str, str],
) -> Decision:
    """Register the candidate (once), move the alias if it wins, and write its model card."""
    import mlflow

    from charlm.card import model_card
    from charlm.serving import log_model

    model_sha = candidate.model_sha256
    # One step from lookup to alias: queued experiments register concurrently, and two of them must
    # neither add the same weights twice nor promote a worse model.
    with store_lock(client.tracking_uri):
        version = _find_version(client, cfg.model_name, model_sha)
        new_version = version is None
        if version is None:
            run_name = f"{candidate.name} (registration)"
            with model_run(client, candidate.run_id, experiment, run_name, tags) as (run_id, _):
                logged = log_model(candidate.model_dir, run_id, generate)
                for key, value in {"val_bpc": candidate.val_bpc, "test_bpc": candidate.test_bpc}.items():
                    client.log_metric(run_id, key, value, model_id=logged.model_id)
            version = mlflow.register_model(logged.model_uri, cfg.model_name, await_registration_for=60)
            for key, value in {
                TAG_MODEL_SHA: model_sha,
                TAG_VAL_SHA: candidate.val_sha256,
                TAG_VAL_BPC: f"{candidate.val_bpc:.6f}",
                TAG_TEST_SHA: candidate.test_sha256,
                TAG_TEST_BPC: f"{candidate.test_bpc:.6f}",
                "charlm.model": candidate.name,
            }.items():
                client.set_model_version_tag(cfg.model_name, version.version, key, value)
        champion = _champion(client, cfg)
        promote, reason = decide(candidate, dict(champion.tags) if champion else None, cfg)
        if promote:
            client.set_registered_model_alias(cfg.model_name, cfg.alias, version.version)
        client.set_model_version_tag(cfg.model_name, version.version, TAG_DECISION, reason)
        decision = Decision(
            candidate=candidate.name,
            version=int(version.version),
            new_version=new_version,
            promoted=promote,
            verdict=reason,
            champion_before=int(champion.version) if champion else None,
            champion=int((version if promote else champion).version),
        )
        card = model_card(candidate, decision, cfg.model_name, cfg.alias, fetch, generate)
        client.update_model_version(cfg.model_name, version.version, description=card)
    return decision
