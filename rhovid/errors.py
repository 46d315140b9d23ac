"""The exception types of problems a user can fix: a flag, a file, a folder, a name.

``rhovid`` prints a ``UserError`` as one line (``rhovid X: error: <message>``) and exits 1; any
other exception is a bug (or a machine problem such as a full disk, which the CLI names) and
prints its traceback. Each type also derives from the builtin it replaces, so
``except ValueError`` / ``pytest.raises(KeyError)`` keep working. Messages say what happened
and what to do.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input that the message explains (printed without a traceback)."""


class UsageError(UserError, ValueError):
    """A flag, setting or file content that cannot be used as given."""


class NotFoundError(UserError, FileNotFoundError):
    """A file or folder the command needs does not exist."""


class UnknownNameError(UserError, KeyError):
    """A name (preset, box set, sample key, config key) that is not known; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""
