"""Queue wait from the publish timestamp header: milliseconds to the microsecond, the ETA counting
when it is later, nothing for a missing or garbage header."""

from __future__ import annotations

from datetime import datetime, timezone

from pipetrace.adapter.messaging import PUBLISHED_HEADER, queued_ms


def test_queue_wait_is_milliseconds_to_the_microsecond() -> None:
    assert queued_ms({PUBLISHED_HEADER: "1000000000000"}, 1_000_001_234_567) == 1.234
    assert queued_ms({PUBLISHED_HEADER: b"1000"}, 1_000_000) == 0.999  # bytes header, µs floor
    assert queued_ms({PUBLISHED_HEADER: "5000"}, 1000) == 0.0  # clock skew: never negative


def test_a_later_eta_is_where_the_wait_starts() -> None:
    eta = datetime(2026, 1, 1, tzinfo=timezone.utc)
    eta_ns = int(eta.timestamp() * 1e9)
    published = str(eta_ns - 60 * 10**9)  # published a minute before its ETA
    assert queued_ms({PUBLISHED_HEADER: published}, eta_ns + 2_000_000, eta) == 2.0
    assert queued_ms({PUBLISHED_HEADER: published}, eta_ns + 2_000_000, eta.isoformat()) == 2.0
    assert queued_ms({PUBLISHED_HEADER: published}, eta_ns + 2_000_000, "not a date") == 60_002.0


def test_no_or_garbage_header_is_no_figure() -> None:
    assert queued_ms(None) is None
    assert queued_ms({}) is None
    assert queued_ms({PUBLISHED_HEADER: "soon"}) is None
    assert queued_ms({PUBLISHED_HEADER: None}) is None
