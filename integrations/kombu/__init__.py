"""pipetrace adapter for kombu (in progress)."""
