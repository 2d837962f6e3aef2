"""The one error type users see: a single line naming the problem and the fix.

The CLI catches :class:`UrlvrError`, prints ``error: <message>`` and exits with code 2; library code
raises it for any bad input (unknown names, malformed files, impossible settings). Anything else is a
bug and keeps its traceback.
"""

__all__ = ["UrlvrError", "lookup"]


class UrlvrError(Exception):
    """Bad input from the user: one line, says what is wrong and how to fix it."""


def lookup(registry: dict, name: str, what: str):
    """``registry[name]``, or a UrlvrError naming the valid choices ("unknown <what> 'x'; choose one of: ...")."""
    try:
        return registry[name]
    except KeyError:
        raise UrlvrError(f"unknown {what} {name!r}; choose one of: {', '.join(sorted(registry))}") from None
