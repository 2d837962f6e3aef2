"""What watches a run, kept apart from what trains it.

- :mod:`~urlvr.watch.health`: label-free health metrics (no gold; safe to act on);
- :mod:`~urlvr.watch.oracle`: oracle metrics (gold needed; monitoring only, never fed to a reward);
- :mod:`~urlvr.watch.detector`: the online collapse detector on label-free signals;
- :mod:`~urlvr.watch.collapse`: the Model Collapse Step, GT Gain and pass@k gain (consumers of the loop);
- :mod:`~urlvr.watch.rank`: ranking base models by those indicators, with rank correlations.

The package imports none of its modules itself: the trainer uses health, oracle and the detector,
while collapse and rank use the trainer.
"""
