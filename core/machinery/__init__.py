"""Span machinery: the span handles and id forcing; the only code that touches OpenTelemetry SDK internals."""
