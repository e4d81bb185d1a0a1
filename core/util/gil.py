"""How often pipetrace's background threads hand the GIL back to the traced threads."""

YIELD_EVERY = 16
"""Background threads release the GIL after this many spans of Python work. Without it a busy export
thread keeps the GIL for a whole switch interval (5 ms) and the task's thread waits for it."""
