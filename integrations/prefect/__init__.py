"""pipetrace adapter for prefect (in progress)."""
