"""User-facing errors: one sentence naming the offending value and what to do instead.

A ``ClipauditError`` is a user mistake or an environment limit, shown without a traceback by
the CLI. Anything else that escapes is a bug and keeps its traceback.
"""


class ClipauditError(Exception):
    """A problem the user can fix; ``str(err)`` is the whole message."""


class DatasetError(ClipauditError):
    """The dataset path, format or columns cannot be used as given."""


class DuplicateIdError(DatasetError):
    """Two samples of one dataset carry the same id."""

    def __init__(self, ids: list[str], where: str) -> None:
        shown = ", ".join(repr(i) for i in ids[:5])
        more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
        super().__init__(
            f"Duplicate sample ids in {where}: {shown}{more}; ids must be unique, so rename "
            "or remove the repeated samples."
        )
        self.ids = ids


class ModelError(ClipauditError):
    """A model spec cannot be resolved or loaded."""
