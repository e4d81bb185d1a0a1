"""pipetrace adapter for dagster (in progress)."""
