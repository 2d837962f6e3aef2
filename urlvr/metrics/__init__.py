"""What watches the run: label-free health metrics (:mod:`.health`) and oracle metrics (:mod:`.oracle`).

The two are kept apart: :mod:`.health` never sees a gold answer and is safe for decisions (early
stopping, checkpoint choice); :mod:`.oracle` needs gold answers and is for monitoring only.
"""
