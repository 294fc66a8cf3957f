"""The `register` section: the registered model, its alias, and when the alias may move."""

import warnings
from typing import Annotated, Literal

from pydantic import Field

from charlm.records import Record


class RegisterConfig(Record):
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


# ABCMeta, BaseModel's metaclass, has a `register` method. pydantic warns that the field shadows it
# and, looking the name up on a subclass, takes the method for the field's default; a FieldInfo left
# on the class is found first, so the field stays required wherever it is inherited.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", r"Field name \"register\"", UserWarning)

    class WithRegister(Record):
        """Records that hold the `register` section inherit it from here."""

        register: RegisterConfig = Field()


WithRegister.register = Field()  # type: ignore[assignment]
