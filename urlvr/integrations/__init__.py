"""urlvr's rewards and diagnostics inside other training engines.

Each integration is its own module and imports its engine, an optional extra, only there:
:mod:`urlvr.integrations.trl` needs ``pip install 'urlvr[trl]'``. Importing this package imports no
engine.
"""

__all__: list[str] = []
