"""A kombu producer or callback consumer for the load test (run under ``pipetrace run --``):

    python kombu_load.py produce URL QUEUE N         publish N messages, print the seconds it took
    python kombu_load.py consume URL QUEUE N WARMUP  consume N messages; print RSS after WARMUP and at the end
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pipetrace
from kombu import Connection, Consumer, Exchange, Producer, Queue


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def connection(url: str) -> Connection:
    """``RQ_KEYPREFIX``: every Redis key of this test under its own prefix (the machine's Redis is shared)."""
    return Connection(url, transport_options={"global_keyprefix": os.environ.get("RQ_KEYPREFIX", "")})


def queue_of(name: str) -> Queue:
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def produce(url: str, name: str, n: int) -> dict[str, object]:
    start = time.perf_counter()
    with connection(url) as conn:
        producer = Producer(conn.channel())
        queue = queue_of(name)
        for i in range(n):
            producer.publish({"i": i}, exchange=queue.exchange, routing_key=name, declare=[queue] if i == 0 else [])
    return {"sent": n, "seconds": time.perf_counter() - start}


def consume(url: str, name: str, n: int, warmup: int) -> dict[str, object]:
    seen = 0
    rss: dict[str, float] = {}
    out_of_order = 0

    def on_message(body: dict[str, int], message: object) -> None:
        nonlocal seen, out_of_order
        out_of_order += body["i"] != seen
        seen += 1
        message.ack()  # type: ignore[attr-defined]
        if seen == warmup:
            rss["start"] = rss_mb()

    start = time.perf_counter()
    with connection(url) as conn:
        with Consumer(conn.channel(), queues=[queue_of(name)], callbacks=[on_message], prefetch_count=200):
            deadline = time.monotonic() + 280
            while seen < n and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=1)
                except TimeoutError:
                    pass
    rss["end"] = rss_mb()
    return {"received": seen, "seconds": time.perf_counter() - start, "rss_mb": rss, "out_of_order": out_of_order,
            "stats": pipetrace.stats()}


if __name__ == "__main__":
    mode, url, name, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    result = produce(url, name, count) if mode == "produce" else consume(url, name, count, int(sys.argv[5]))
    assert pipetrace.force_flush(60), "spans not flushed"
    result["stats_after_flush"] = pipetrace.stats()
    print(json.dumps(result))
