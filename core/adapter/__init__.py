"""The adapter API: what integrations call besides the public API (run closing for message systems)."""
