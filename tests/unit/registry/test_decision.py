"""decision: the pure rules of registration, on standings alone: the best candidate, whether the
alias may move (the champion rule), and the verdict that says why."""

from typing import Any

from charlm.evaluation.ranking import Standing
from charlm.params.registry import RegistryConfig
from charlm.registry.decision import may_replace, verdict
from tests.helpers import SHA_A, SHA_B, config, eval_report

KEEP = config(RegistryConfig, on_new_val_data="keep", min_improvement_bpc=0.0)
PROMOTE = config(RegistryConfig, on_new_val_data="promote", min_improvement_bpc=0.0)


def test_the_best_candidate_has_the_lowest_val_bpc_then_fewer_parameters() -> None:
    def best(*reports: Any) -> Any:  # as the register stage chooses
        return min(reports, key=lambda report: report.standing.key)

    a = eval_report(2.0, test_bpc=2.0, name="a")
    b = eval_report(2.5, test_bpc=1.0, name="b")  # a far better test bpc never decides
    assert best(a, b) is a
    small = eval_report(2.0, num_params=999, name="small")
    assert best(a, small) is small
    assert best(a, eval_report(2.0 - 4e-7, name="c")) is a  # a tie at the tags' precision


def test_the_champion_rule() -> None:
    candidate, worse, other = (
        Standing(2.0, 10, SHA_A, 0),
        Standing(2.5, 10, SHA_A, 0),
        Standing(1.0, 10, SHA_B, 0),
    )
    assert may_replace(candidate, None, KEEP) and may_replace(candidate, worse, KEEP)
    assert not may_replace(worse, candidate, KEEP)  # on the same data, only a better model
    assert not may_replace(Standing(1.0, 10, SHA_A, 3), worse, KEEP)  # never one that writes garbage
    assert not may_replace(Standing(1.0, 10, SHA_A, None), None, KEEP)  # nor one never judged
    # Off other validation data only when told, and only off the data this registration replaces.
    assert not may_replace(candidate, other, KEEP, replaced=SHA_B)
    assert may_replace(candidate, other, PROMOTE, replaced=SHA_B)
    assert not may_replace(candidate, other, PROMOTE, replaced=None)  # another process's promotion
    margin = config(RegistryConfig, min_improvement_bpc=0.01)
    assert not may_replace(Standing(1.995, 10, SHA_A, 0), candidate, margin)
    assert may_replace(Standing(1.989, 10, SHA_A, 0), candidate, margin)


def test_the_verdict_says_why() -> None:
    candidate = Standing(2.0, 10, SHA_A, 0)
    assert verdict(candidate, None, False, KEEP) == "no champion yet: the candidate becomes the first"
    assert verdict(candidate, candidate, True, KEEP) == "the candidate already is the champion"
    assert (
        verdict(candidate, Standing(2.5, 10, SHA_A, 0), False, KEEP)
        == "val bpc 2.0000 beats the champion's 2.5000"
    )
    kept = verdict(Standing(2.5, 10, SHA_A, 0), candidate, False, KEEP)
    assert kept == "val bpc 2.5000 does not beat the champion's 2.0000; champion kept"
    assert "not comparable; champion kept" in verdict(candidate, Standing(1.0, 10, SHA_B, 0), False, KEEP)
    assert "promoted (registry.on_new_val_data: promote)" in verdict(
        candidate, Standing(1.0, 10, SHA_B, 0), False, PROMOTE
    )


def test_the_champion_moves_only_for_more_than_the_margin() -> None:
    margin = config(RegistryConfig, min_improvement_bpc=0.01)
    champion = Standing(2.000, 10, SHA_A, 0)
    assert not Standing(1.995, 10, SHA_A, 0).beats(champion, 0.01)  # within the spread of seeds
    assert not Standing(1.990, 10, SHA_A, 0).beats(champion, 0.01)  # exactly the margin is not more
    assert Standing(1.989, 10, SHA_A, 0).beats(champion, 0.01)
    assert not Standing(2.000, 5, SHA_A, 0).beats(champion, 0.01)  # fewer parameters break ties, not margins
    close = verdict(Standing(1.995, 10, SHA_A, 0), champion, False, margin)
    assert close == (
        "val bpc 1.9950 does not beat the champion's 2.0000 by more than the margin of 0.01"
        " (registry.min_improvement_bpc); champion kept"
    )
    assert verdict(Standing(1.980, 10, SHA_A, 0), champion, False, margin).startswith("val bpc 1.9800 beats")
