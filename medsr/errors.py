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


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: object) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\r``, ``\\t``, ``\\xNN``), so
    that a message naming a path with a newline stays one line."""
    return "".join(_ESCAPES.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 32 or 127 <= ord(c) < 160
                                       else c) for c in str(text))
