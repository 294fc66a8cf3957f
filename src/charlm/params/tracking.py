"""The `tracking` section: the MLflow experiment every stage logs to."""

from typing import Annotated

from pydantic import Field

from charlm.records import Record


class TrackingConfig(Record):
    experiment: Annotated[str, Field(pattern=r"\S")]
