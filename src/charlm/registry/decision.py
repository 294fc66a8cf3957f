"""Whether a candidate becomes the champion, and the record of what registration did.

The alias moves only to a version whose validation bpc beats the champion's on the same
validation data (same val-split hash); otherwise the champion stays and the verdict says why.
The test bpc is recorded beside it and never decides, so a sweep cannot select on the test split.
"""

from charlm.params import RegisterConfig
from charlm.records import Record
from charlm.registry.candidate import Candidate
from charlm.tracking import tags as tag


def may_move(candidate: Candidate, champion_tags: dict[str, str] | None, cfg: RegisterConfig) -> bool:
    """Whether registering the candidate may move the alias at all: not off a champion validated on
    other data, unless `register.on_new_val_data: promote` says the new validation data replaces it."""
    if champion_tags is None or champion_tags.get(tag.split_sha256("val")) == candidate.report.val.sha256:
        return True
    return cfg.on_new_val_data == "promote"


def verdict(candidate: Candidate, champion_tags: dict[str, str] | None, cfg: RegisterConfig) -> str:
    """Why the candidate is or is not the champion, against `champion_tags`: the champion it
    replaced when it won, the one that stayed or came instead when it did not."""
    if champion_tags is None:
        return "no champion yet: the candidate becomes the first"
    if champion_tags.get(tag.MODEL_SHA256) == candidate.model_sha256:
        return "the candidate already is the champion"
    if champion_tags.get(tag.split_sha256("val")) != candidate.report.val.sha256:
        if cfg.on_new_val_data == "promote":
            return "the champion was validated on other data; promoted (register.on_new_val_data: promote)"
        return (
            "the champion was validated on other data, so the two are not comparable; champion kept"
            " (set register.on_new_val_data: promote to replace it)"
        )
    champion_bpc = float(champion_tags[tag.split_bpc("val")])
    beats = candidate.report.val.bpc < champion_bpc
    comparison = "beats" if beats else "does not beat"
    text = f"val bpc {candidate.report.val.bpc:.4f} {comparison} the champion's {champion_bpc:.4f}"
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
    champion: int
