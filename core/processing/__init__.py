"""Processing and export: the provider, the span processor chain (redaction, sampling) and the exporters."""
