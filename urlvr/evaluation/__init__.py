"""Evaluation that can be trusted: seeds, unbiased pass@k, maj@k over equivalent answers, CIs.

- :mod:`~urlvr.evaluation.metrics`: pure statistics of graded samples (pass@k, maj@k, bootstrap CIs,
  paired differences);
- :mod:`~urlvr.evaluation.harness`: the engine behind ``urlvr eval`` (sampling, grading, results.json);
- :mod:`~urlvr.evaluation.compare`: pairing two results problem by problem (``urlvr compare``);
- :mod:`~urlvr.evaluation.ttt`: test-time training, evaluated before and after (``urlvr ttt``).

The package imports none of its modules itself: the trainer uses the harness for validation, and the
test-time-training module uses the trainer.
"""
