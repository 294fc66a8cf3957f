"""The `vocab` section."""

from typing import Annotated

from pydantic import Field

from charlm.records import Record


class VocabConfig(Record):
    min_count: Annotated[int, Field(ge=1)]  # rarer training characters map to <unk>
