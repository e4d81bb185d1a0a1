"""How often pipetrace's background threads hand the GIL back to the traced threads."""

import time

YIELD_EVERY = 16
"""Background loops look at the clock after this many spans of Python work (a clock read per span would
cost more than the check saves)."""

YIELD_AFTER_S = 0.002
"""A background thread that has worked this long since it last let go of the GIL lets go of it
(``sleep(0)``): without it, a busy export thread keeps the GIL for a whole switch interval (5 ms) while the
task's thread waits. Handing it back every 16 spans instead, as before, forced a context switch on the
export thread every few spans and cost ~9 µs of CPU a Celery task (``celery_inprocess.py --cpu 1
--before``)."""


def hand_back(since: float) -> float:
    """Every :data:`YIELD_EVERY` spans of a background loop: let go of the GIL if this thread has worked
    :data:`YIELD_AFTER_S` since ``since`` (its last hand-back, or the loop's start). The new ``since``."""
    now = time.perf_counter()
    if now - since < YIELD_AFTER_S:
        return since
    time.sleep(0)
    return time.perf_counter()
