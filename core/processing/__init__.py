"""Processing and export: the provider, the span processor chain (redaction, sampling) and the exporters."""

from . import metrics as _metrics  # noqa: F401 - registers span-derived metrics with runtime.on_configure
