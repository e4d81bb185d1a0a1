"""pipetrace adapter for airflow (in progress)."""
