"""Leaf utilities every layer may use (they import nothing of pipetrace): rate-limited warnings, lost-span
tally, numbers."""
