"""The `registry` section: the registered model, its alias, and when the alias may move."""

from typing import Annotated, Literal

from pydantic import Field

from charlm.records import Record


class RegistryConfig(Record):
    model_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][\w.-]*$")]
    alias: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    # When the champion was validated on other data the two cannot be compared:
    # keep the champion or promote the new candidate anyway.
    on_new_val_data: Literal["keep", "promote"]
    # A candidate replaces the champion only if its val bpc is lower by more than this: less than
    # the spread between training seeds is no difference.
    min_improvement_bpc: Annotated[float, Field(ge=0, allow_inf_nan=False)]

    @property
    def alias_uri(self) -> str:
        """The model URI that follows the alias, e.g. `models:/charlm@champion`."""
        return f"models:/{self.model_name}@{self.alias}"
