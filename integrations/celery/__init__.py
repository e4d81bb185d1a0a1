"""pipetrace adapter for celery (in progress)."""
