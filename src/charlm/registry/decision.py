"""Whether a candidate becomes the champion, and the record of what registration did.

The alias moves only when the candidate's validation bpc beats the champion's on the same
validation data (same val-split hash); otherwise the champion stays and the verdict says why.
The test bpc is recorded beside it and never decides, so a sweep cannot select on the test split.
"""

from charlm.params import RegisterConfig
from charlm.records import Record
from charlm.registry.candidate import Candidate
from charlm.tracking import tags as tag


def decide(
    candidate: Candidate, champion_tags: dict[str, str] | None, cfg: RegisterConfig
) -> tuple[bool, str]:
    """Whether the candidate becomes champion, and why."""
    if champion_tags is None:
        return True, "no champion yet: the candidate becomes the first"
    if champion_tags.get(tag.MODEL_SHA256) == candidate.model_sha256:
        return False, "the candidate already is the champion"
    if champion_tags.get(tag.split_sha256("val")) != candidate.report.val.sha256:
        if cfg.on_new_val_data == "promote":
            return (
                True,
                "the champion was validated on other data; promoted (register.on_new_val_data: promote)",
            )
        return False, (
            "the champion was validated on other data, so the two are not comparable; champion kept"
            " (set register.on_new_val_data: promote to replace it)"
        )
    champion_bpc = float(champion_tags[tag.split_bpc("val")])
    verdict = f"val bpc {candidate.report.val.bpc:.4f} {{}} the champion's {champion_bpc:.4f}"
    if candidate.report.val.bpc < champion_bpc:
        return True, verdict.format("beats")
    return False, verdict.format("does not beat") + "; champion kept"


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
