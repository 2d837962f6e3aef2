"""The one error type users see: a single line naming the problem and the fix.

The CLI catches :class:`UrlvrError`, prints ``error: <message>`` and exits with code 2; library code
raises it for any bad input (unknown names, malformed files, impossible settings). Anything else is a
bug and keeps its traceback.
"""

__all__ = ["UrlvrError"]


class UrlvrError(Exception):
    """Bad input from the user: one line, says what is wrong and how to fix it."""
