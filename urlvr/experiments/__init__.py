"""Experiments built on the library: the demo and the reproduction of the paper's findings.

Consumers only: :mod:`~urlvr.experiments.demo` (``urlvr demo``) and :mod:`~urlvr.experiments.reproduce`
(``urlvr reproduce``) with its plan, runner, pure verdicts, one module per experiment, figures and
findings. No library module imports this package (a test checks it); the commands do.
"""
