"""ranking: one key orders models, at the precision the registry's tags carry, and only figures on
the same validation data compare."""

from charlm.evaluation.ranking import BPC_DECIMALS, Standing
from tests.helpers import SHA_A, SHA_B


def test_lower_bpc_ranks_first_then_fewer_parameters() -> None:
    best, worse, bigger = (
        Standing(2.0, 100, SHA_A, 0),
        Standing(2.1, 50, SHA_A, 0),
        Standing(2.0, 200, SHA_A, 0),
    )
    assert sorted([worse, bigger, best], key=lambda s: s.key) == [best, bigger, worse]
    assert best.beats(worse) and best.beats(bigger) and not worse.beats(best)


def test_figures_rank_at_the_precision_of_the_tags() -> None:
    # What a version's tag holds (6 decimals) ranks as the full figure it was written from.
    figure = 2.06204449
    from_tag = Standing(float(f"{figure:.{BPC_DECIMALS}f}"), 100, SHA_A, 0)
    assert Standing(figure, 100, SHA_A, 0) == from_tag
    assert not Standing(figure - 1e-9, 100, SHA_A, 0).beats(from_tag)


def test_other_validation_data_never_compares() -> None:
    assert not Standing(1.0, 1, SHA_B, 0).comparable(Standing(2.0, 1, SHA_A, 0))
    assert not Standing(1.0, 1, SHA_B, 0).beats(Standing(2.0, 1, SHA_A, 0))
