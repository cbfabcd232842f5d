"""Every error a user can cause, grouped by domain, each with a message and a remedy.

``recipes.__main__`` maps each family to an exit code and prints the message without a
traceback: a bad recipe is the user's to fix, not a crash.
"""

from __future__ import annotations


class RecipeError(Exception):
    """Base of the project's user-facing errors. A message is required."""

    exit_code = 1

    def __init__(self, message: str):
        if not message:
            raise ValueError("RecipeError needs a message")
        super().__init__(message)
        self.message = message


class RecipeNotFoundError(RecipeError):
    """A recipe name or file that does not exist."""

    exit_code = 2


class RecipeValidationError(RecipeError):
    """A recipe that does not match the schema, or an override that names no field."""

    exit_code = 2


class ModelSourceError(RecipeError):
    """A model reference that cannot be resolved (missing path, unknown Hub repo)."""

    exit_code = 2


class DatasetError(RecipeError):
    """A dataset that cannot be loaded or lacks the configured columns or splits."""

    exit_code = 2


class StageFailedError(RecipeError):
    """A stage raised while running; names the stage and the stages left undone."""

    exit_code = 1


class ParityError(RecipeError):
    """A converted model whose outputs drift from its source past the recipe's tolerance."""

    exit_code = 1


class RunFolderError(RecipeError):
    """A run folder or record that cannot be read (missing, damaged, or of another schema version),
    or a run folder that cannot be written (read-only, not a folder, a full disk)."""

    exit_code = 2


class RunFolderBusyError(RecipeError):
    """Another live run holds the run folder's lock."""

    exit_code = 3


class PublishError(RecipeError):
    """Every stage finished but publishing the result to the Hub failed."""

    exit_code = 4
