"""alias: converging on the best version corrects another machine's stale write, compares only
versions validated on the same data, leaves a promotion alone unless it replaces that data, and says
so when the alias never settles."""

from pathlib import Path
from typing import Any

import pytest

from charlm.errors import CharlmError
from charlm.params.registry import RegistryConfig
from charlm.registry import alias
from tests.helpers import SHA_A, SHA_B, SHA_C, config, register_candidate, saved_candidate

pytestmark = pytest.mark.slow  # a real MLflow store


def test_a_stale_write_is_corrected_and_other_validation_data_is_ignored(
    tmp_path: Path, mlflow_client: Any
) -> None:
    for seed, bpc, sha in [(1, 2.0, SHA_A), (2, 1.5, SHA_A), (3, 1.8, SHA_A), (4, 0.5, SHA_B)]:
        register_candidate(mlflow_client, saved_candidate(tmp_path, seed, val_bpc=bpc, val_sha256=sha))
    cfg = config(RegistryConfig)
    assert alias.number(alias.champion(mlflow_client, cfg)) == 2
    # Another machine decided on a read made before version 2 existed, and wrote last.
    mlflow_client.set_registered_model_alias(cfg.model_name, cfg.alias, "3")
    assert alias.number(alias.settle(mlflow_client, cfg, SHA_A)) == 2
    assert alias.number(alias.champion(mlflow_client, cfg)) == 2


def test_an_alias_that_never_settles_fails_naming_it(
    tmp_path: Path, mlflow_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for seed, bpc in [(1, 2.0), (2, 1.5)]:
        register_candidate(mlflow_client, saved_candidate(tmp_path, seed, val_bpc=bpc))
    cfg = config(RegistryConfig)
    mlflow_client.set_registered_model_alias(cfg.model_name, cfg.alias, "1")
    # Every write is undone by another process before this one reads again.
    monkeypatch.setattr(mlflow_client, "set_registered_model_alias", lambda *args: None)
    with pytest.raises(CharlmError, match=r"charlm@champion alias did not settle after 20 rounds"):
        alias.settle(mlflow_client, cfg, SHA_A)


def test_a_stale_keep_does_not_undo_a_promotion_and_a_promotion_outlasts_one(
    tmp_path: Path, mlflow_client: Any
) -> None:
    old = register_candidate(mlflow_client, saved_candidate(tmp_path, 1, val_bpc=2.0, val_sha256=SHA_A))
    new = register_candidate(
        mlflow_client, saved_candidate(tmp_path, 2, val_bpc=2.5, val_sha256=SHA_B), on_new_val_data="promote"
    )
    cfg = config(RegistryConfig)
    assert alias.number(alias.champion(mlflow_client, cfg)) == new.version  # new data replaced old
    # A keep process that read the champion before the promotion converges on the old data: it
    # leaves the alias where the promotion put it.
    assert alias.number(alias.settle(mlflow_client, cfg, SHA_A)) == new.version
    # Had its stale write landed, the promoting process's next read would put it back.
    mlflow_client.set_registered_model_alias(cfg.model_name, cfg.alias, str(old.version))
    promote = config(RegistryConfig, on_new_val_data="promote")
    assert alias.number(alias.settle(mlflow_client, promote, SHA_B, replaces=SHA_A)) == new.version
    # A promotion onto a third data set is another process's decision, and stays.
    third = register_candidate(mlflow_client, saved_candidate(tmp_path, 3, val_bpc=3.0, val_sha256=SHA_C))
    mlflow_client.set_registered_model_alias(cfg.model_name, cfg.alias, str(third.version))
    assert alias.number(alias.settle(mlflow_client, promote, SHA_B, replaces=SHA_A)) == third.version


def test_a_version_registered_before_the_writing_judge_stays_until_beaten_and_never_returns(
    tmp_path: Path, mlflow_client: Any
) -> None:
    cfg = config(RegistryConfig)
    old = register_candidate(mlflow_client, saved_candidate(tmp_path, 1, val_bpc=2.0))
    mlflow_client.delete_model_version_tag(cfg.model_name, str(old.version), "charlm.writing_failed")
    unjudged = alias.standing(mlflow_client.get_model_version(cfg.model_name, str(old.version)).tags)
    assert unjudged.failed_texts is None and not unjudged.writes_well
    # Within the margin, the old champion stays; beaten, it goes, and settling never brings it back.
    close = register_candidate(
        mlflow_client, saved_candidate(tmp_path, 2, val_bpc=1.99), min_improvement_bpc=0.02
    )
    assert not close.promoted and alias.number(alias.champion(mlflow_client, cfg)) == old.version
    better = register_candidate(mlflow_client, saved_candidate(tmp_path, 3, val_bpc=1.5))
    assert better.promoted
    mlflow_client.set_registered_model_alias(cfg.model_name, cfg.alias, str(old.version))
    assert alias.number(alias.settle(mlflow_client, cfg, SHA_A)) == better.version
