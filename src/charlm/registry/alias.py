"""Moving the champion alias right when several machines register at once: MLflow has no
compare-and-set on aliases, so instead of a lock, registration converges on the best version
(`settle`; "Promotion under concurrency" in docs/architecture.md gives the protocol and the proof)."""

from typing import TYPE_CHECKING, Any

from charlm.errors import CharlmError
from charlm.evaluation.ranking import Standing, bpc_text
from charlm.params.registry import RegistryConfig
from charlm.registry.decision import may_replace
from charlm.tracking import tags as tag
from charlm.tracking.store import first_line

if TYPE_CHECKING:
    from mlflow import MlflowClient

ROUNDS = 20  # each round is one write that another process's write undid; a few at most in practice


def champion(client: "MlflowClient", cfg: RegistryConfig) -> Any | None:
    """The version the alias points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(cfg.model_name, cfg.alias)
    except MlflowException:
        return None


def tagged(client: "MlflowClient", name: str, key: str, value: str) -> list[Any]:
    return [v for v in client.search_model_versions(f"name='{name}'") if v.tags.get(key) == value]


def number(version: Any) -> int:
    """A version's number: MLflow's stores give it as an int or a str, so compare these."""
    return int(version.version)


def standing_tags(standing: Standing) -> dict[str, str]:
    """A version's standing as its tags: the figures it is ranked by, at the ranking's precision."""
    return {
        tag.split_bpc("val"): bpc_text(standing.val_bpc),
        tag.NUM_PARAMS: str(standing.num_params),
        tag.split_sha256("val"): standing.val_sha256,
        tag.WRITING_FAILED: str(standing.failed_texts),
    }


def standing(tags: dict[str, str]) -> Standing:
    """A version's standing, from the tags `standing_tags` gave it."""
    try:
        values = (tags[tag.split_bpc("val")], tags[tag.NUM_PARAMS], tags[tag.split_sha256("val")])
    except KeyError as err:
        raise CharlmError(
            f"a registered version lacks its tag {err} (registered by an older charlm?)"
        ) from None
    failed = tags.get(tag.WRITING_FAILED)  # absent on versions registered before the judge existed
    return Standing(float(values[0]), int(values[1]), values[2], None if failed is None else int(failed))


def settle(client: "MlflowClient", cfg: RegistryConfig, val_sha256: str, replaces: str | None = None) -> Any:
    """Point the alias at the best version validated on `val_sha256` that writes well, when the
    champion rule (`decision.may_replace`) lets it replace the champion; the version it ends on.
    `replaces`: the validation data of the champion the registration found, when it differs."""
    from mlflow.exceptions import MlflowException

    failure = "other processes keep moving it"
    for _ in range(ROUNDS):
        versions = tagged(client, cfg.model_name, tag.split_sha256("val"), val_sha256)
        current = champion(client, cfg)
        eligible = [v for v in versions if standing(v.tags).writes_well]
        if not eligible:
            return current
        best = min(eligible, key=lambda v: (standing(v.tags).key, number(v)))
        if current is not None and number(current) == number(best):
            return current
        if not may_replace(standing(best.tags), standing(current.tags) if current else None, cfg, replaces):
            return current
        try:
            client.set_registered_model_alias(cfg.model_name, cfg.alias, best.version)
        except MlflowException as err:  # two first writes of the alias at once clash in the store
            failure = first_line(err)
    raise CharlmError(
        f"the {cfg.model_name}@{cfg.alias} alias did not settle after {ROUNDS} rounds ({failure});"
        " run register again"
    )
