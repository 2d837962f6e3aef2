"""The built-in testbed: a character tokenizer, tiny Llama models and pretraining with controlled priors.

:mod:`~urlvr.testbed.tokenizer`, :mod:`~urlvr.testbed.models`, :mod:`~urlvr.testbed.priors` (built
models are cached; :func:`urlvr.loading.resolve_model` builds one for a ``testbed:PRIOR`` name).
"""
