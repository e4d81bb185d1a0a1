"""Web viewer (in progress)."""
