"""Whether a candidate becomes the champion (`may_replace`, the one champion rule), why it does or
does not (`verdict`), and the record of what registration did (`Decision`).
"""

from charlm.evaluation.ranking import Standing
from charlm.params.registry import RegistryConfig
from charlm.records import Record


def may_replace(
    candidate: Standing, champion: Standing | None, cfg: RegistryConfig, replaced: str | None = None
) -> bool:
    """The champion rule: whether `candidate` may take the alias from `champion`. Never a candidate
    whose texts fail the writing judge; on the champion's validation data, only by beating it by
    more than `registry.min_improvement_bpc`; off other data, only under `registry.on_new_val_data:
    promote`, and only data the candidate's replaces (`replaced`, the val sha256 of the champion
    its registration found)."""
    if not candidate.writes_well:
        return False
    if champion is None:
        return True
    if candidate.comparable(champion):
        return candidate.beats(champion, cfg.min_improvement_bpc)
    return cfg.on_new_val_data == "promote" and champion.val_sha256 == replaced


def verdict(candidate: Standing, champion: Standing | None, same: bool, cfg: RegistryConfig) -> str:
    """Why the candidate is or is not the champion, against `champion`: the champion it replaced
    when it won, the one that stayed or came instead when it did not (`same`: it is the candidate's
    own version)."""
    if not candidate.writes_well:
        return (
            f"{candidate.failed_texts} of the texts it writes fail the writing judge (evaluate.writing):"
            " not promoted, whatever its val bpc"
        )
    if champion is None:
        return "no champion yet: the candidate becomes the first"
    if same:
        return "the candidate already is the champion"
    if not candidate.comparable(champion):
        if cfg.on_new_val_data == "promote":
            return "the champion was validated on other data; promoted (registry.on_new_val_data: promote)"
        return (
            "the champion was validated on other data, so the two are not comparable; champion kept"
            " (set registry.on_new_val_data: promote to replace it)"
        )
    beats = may_replace(candidate, champion, cfg)
    text = f"val bpc {candidate.val_bpc:.4f} {'beats' if beats else 'does not beat'} the champion's {champion.val_bpc:.4f}"
    if cfg.min_improvement_bpc:
        text += f" by more than the margin of {cfg.min_improvement_bpc:g} (registry.min_improvement_bpc)"
    return text if beats else text + "; champion kept"


class Decision(Record):
    """`metrics/register.json`: the candidate's version, and whether it is now the champion."""

    registered_model: str
    alias: str
    candidate: str
    version: int
    new_version: bool
    promoted: bool
    verdict: str
    champion_before: int | None
    champion: int | None  # None: no version has been the champion yet
