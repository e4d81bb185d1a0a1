"""Garbage, oversized and adversarial trace headers for real Celery messages, one set per case."""

from __future__ import annotations

from typing import Any

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def cases() -> dict[str, dict[str, Any]]:
    return {
        "baggage 5,000 entries": {"traceparent": TP, "baggage": ",".join(f"k{i}=v{i}" for i in range(5000))},
        "baggage 200 kB value": {"traceparent": TP, "baggage": "k=" + "x" * 200_000},
        "baggage bad encoding": {"traceparent": TP, "baggage": "k=%ZZ%,=;;,\x00=\x01"},
        "tracestate 10,000 entries": {"traceparent": TP, "tracestate": ",".join(f"v{i}=x" for i in range(10_000))},
        "5,000 extra headers": {f"h{i}": "v" * 100 for i in range(5000)} | {"traceparent": TP},
        "control characters": {"traceparent": "00-\x00\x01\x1b[31m" + "a" * 29 + "-b7ad6b7169203331-01"},
        "lone surrogates": {"traceparent": "\ud800" * 55, "tracestate": "\udfff=\ud800"},
        "invalid utf-8 bytes": {"traceparent": b"\xff\xfe" + bytes(range(128, 181))},
        "traceparent list": {"traceparent": [TP] * 1000},
        "traceparent dict": {"traceparent": {"trace_id": 1, "nested": {"a": [1, 2]}}},
        "traceparent number": {"traceparent": 10**30},
        "traceparent 1 MB": {"traceparent": "00-" + "f" * 1_000_000},
        "all-zero ids": {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"},
        "version ff": {"traceparent": "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        "published-ns garbage": {"traceparent": TP, "pipetrace-published-ns": "yesterday"},
        "published-ns huge": {"traceparent": TP, "pipetrace-published-ns": 10**40},
        "published-ns negative": {"traceparent": TP, "pipetrace-published-ns": -5},
        "pipeline name 100 kB": {"traceparent": TP, "pipetrace_pipeline": "p\n\x1b[2J" + "x" * 100_000},
        "pipeline name not a string": {"traceparent": TP, "pipetrace_pipeline": {"a": [1, 2, 3]}},
        "chord header 100,000 ids": {"traceparent": TP, "pipetrace_chord_header": ",".join(["x"] * 100_000)},
        "chord header not a string": {"traceparent": TP, "pipetrace_chord_header": [1, None, {"a": 2}]},
        "nested headers garbage": {"headers": {"traceparent": "zz", "baggage": "\x00" * 10_000}},
        "nested headers not a dict": {"headers": ["traceparent", TP]},
    }
