"""The `prepare` section: how raw documents are selected, cleaned and split."""

from typing import Annotated, Literal

from pydantic import Field, model_validator

from charlm.params.base import Fraction, Globs
from charlm.records import Invalid, Record

UnicodeForm = Literal["NFC", "NFD", "NFKC", "NFKD", "none"]


class PrepareConfig(Record):
    include: Annotated[Globs, Field(min_length=1)]  # globs over document names (archive members or files)
    exclude: Globs
    strip_gutenberg: bool
    normalize_newlines: bool
    unicode_form: UnicodeForm
    val_fraction: Fraction
    test_fraction: Fraction
    val_documents: Globs  # explicit document names; override val_fraction
    test_documents: Globs
    seed: Annotated[int, Field(ge=0)]  # orders the documents the held-out splits are drawn from

    @model_validator(mode="after")
    def _splits_fit(self) -> "PrepareConfig":
        total = self.val_fraction + self.test_fraction
        if total >= 1:
            raise Invalid("val_fraction + test_fraction", f"must be < 1 (train needs the rest), got {total}")
        if both := sorted(set(self.val_documents) & set(self.test_documents)):
            raise Invalid("val_documents", f"must be disjoint from test_documents, got {both}")
        return self
