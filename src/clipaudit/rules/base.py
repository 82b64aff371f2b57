"""The base of every rules-pack section: unknown keys are refused, actions are three words."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Action = Literal["drop", "flag", "keep"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
