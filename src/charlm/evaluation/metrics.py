"""What one evaluation pass measures, and bits per character from nats."""

import math

from pydantic import computed_field

from charlm.records import Record


def bits_per_char(loss_nats: float) -> float:
    """A cross-entropy in nats per character, in bits per character."""
    return loss_nats / math.log(2)


class EvalResult(Record):
    loss_nats: float  # mean cross-entropy per predicted character
    accuracy: float  # top-1 next-character accuracy
    chars: int  # predicted characters

    @computed_field  # type: ignore[prop-decorator]
    @property
    def bpc(self) -> float:
        return bits_per_char(self.loss_nats)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def perplexity(self) -> float:
        return math.exp(self.loss_nats)
