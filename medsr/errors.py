"""Exceptions that mean "the user gave us something we cannot use".

The CLI turns a :class:`UserError` into one line on stderr and exit code 2; anything
else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input, bad arguments or an unusable file: reported as one line, exit code 2."""


class InputError(UserError):
    """An input file or directory cannot be read as an image."""


class OutputError(UserError):
    """The output location cannot be written (exists, read-only, full, too large)."""
