"""The `evaluate` section: one evaluation layout for every model, so their figures compare."""

from charlm.params.base import Positive
from charlm.records import Record


class EvaluateConfig(Record):
    batch_size: Positive
    seq_len: Positive
