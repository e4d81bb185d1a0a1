"""Analysis of stored traces (in progress)."""
