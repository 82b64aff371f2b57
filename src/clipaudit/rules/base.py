"""The base of every rules-pack section: unknown keys are refused, actions are three words.

Numbers and switches are strict: ``true`` is not the integer 1, ``"0.9"`` (a string) is not
the number 0.9, and ``.nan`` / ``.inf`` are no threshold (write ``null`` where a field
allows "no limit"). An integer is a valid ``Float``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AllowInfNan, BaseModel, ConfigDict, Field
from pydantic import Strict as StrictMode

Action = Literal["drop", "flag", "keep"]

Int = Annotated[int, StrictMode()]
Float = Annotated[float, StrictMode(), AllowInfNan(False)]
Bool = Annotated[bool, StrictMode()]
# A detector's score is a probability; a cosine lies in [-1, 1].
Probability = Annotated[Float, Field(ge=0, le=1)]
Cosine = Annotated[Float, Field(ge=-1, le=1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
