"""Whether a candidate becomes the champion (`may_replace`, the one champion rule), why it does or
does not (`verdict`), and the record of what registration did (`Decision`)."""

from charlm.evaluation.ranking import Standing
from charlm.params.registry import RegistryConfig
from charlm.records import Record


def may_replace(
    candidate: Standing, holder: Standing | None, cfg: RegistryConfig, replaced: str | None = None
) -> bool:
    """The champion rule: whether `candidate` may take the alias from the champion, standing as
    `holder`. Never a candidate whose texts fail the writing judge; on the champion's validation
    data, only by beating it by more than `registry.min_improvement_bpc`; off other data, only under
    `registry.on_new_val_data: promote`, and only data the candidate's replaces (`replaced`, the val
    sha256 of the champion its registration found)."""
    if not candidate.writes_well:
        return False
    if holder is None:
        return True
    if candidate.comparable(holder):
        return candidate.beats(holder, cfg.min_improvement_bpc)
    return cfg.on_new_val_data == "promote" and holder.val_sha256 == replaced


def verdict(candidate: Standing, holder: Standing | None, same: bool, cfg: RegistryConfig) -> str:
    """Why the candidate is or is not the champion, against `holder`, the standing of the champion
    it replaced when it won, the one that stayed or came instead when it did not (`same`: it is the
    candidate's own version)."""
    if not candidate.writes_well:
        return (
            f"{candidate.failed_texts} of the texts it writes fail the writing judge (evaluate.writing):"
            " not promoted, whatever its val bpc"
        )
    alias = cfg.alias  # the champion's name
    if holder is None:
        return f"no {alias} yet: the candidate becomes the first"
    if same:
        return f"the candidate already is the {alias}"
    if not candidate.comparable(holder):
        if cfg.on_new_val_data == "promote":
            return f"the {alias} was validated on other data; promoted (registry.on_new_val_data: promote)"
        return (
            f"the {alias} was validated on other data, so the two are not comparable; {alias} kept"
            " (set registry.on_new_val_data: promote to replace it)"
        )
    beats = may_replace(candidate, holder, cfg)
    text = f"val bpc {candidate.val_bpc:.4f} {'beats' if beats else 'does not beat'} the {alias}'s {holder.val_bpc:.4f}"
    if cfg.min_improvement_bpc:
        text += f" by more than the margin of {cfg.min_improvement_bpc:g} (registry.min_improvement_bpc)"
    return text if beats else f"{text}; {alias} kept"


class Decision(Record):
    """`metrics/register.json`: the candidate's version, and whether it is now the champion."""

    registered_model: str
    alias: str
    candidate: str
    version: int
    new_version: bool
    promoted: bool
    verdict: str
    version_before: int | None  # the champion's version when registration began
    champion_version: int | None  # now; None: no version has been the champion yet
