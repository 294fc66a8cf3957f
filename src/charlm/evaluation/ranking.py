"""How models rank, and when two can be compared (`Standing`): the one rule behind choosing the
candidate, ordering the comparison table, settling the champion alias and the registry's verdict."""

from dataclasses import dataclass

BPC_DECIMALS = 6


def bpc_text(bpc: float) -> str:
    """A bpc as the registry's tags carry it: at the ranking's precision."""
    return f"{bpc:.{BPC_DECIMALS}f}"


@dataclass(frozen=True)
class Standing:
    val_bpc: float
    num_params: int
    val_sha256: str
    failed_texts: int | None  # of those the writing judge read; None: registered before it judged

    def __post_init__(self) -> None:
        object.__setattr__(self, "val_bpc", round(self.val_bpc, BPC_DECIMALS))

    @property
    def key(self) -> tuple[float, int]:
        """Sorts the better model first."""
        return self.val_bpc, self.num_params

    @property
    def writes_well(self) -> bool:
        return self.failed_texts == 0

    def comparable(self, other: "Standing") -> bool:
        return self.val_sha256 == other.val_sha256

    def beats(self, other: "Standing", margin: float = 0.0) -> bool:
        """Ranks before `other` on the same validation data; with a `margin`, by more than it in
        bpc (below the spread between training seeds, a lower figure is no difference)."""
        if not self.comparable(other):
            return False
        return self.val_bpc < other.val_bpc - margin if margin else self.key < other.key
