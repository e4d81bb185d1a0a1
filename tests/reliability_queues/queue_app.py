"""The Celery app the queue/worker reliability tests run in real workers. Broker, backend, queue and the
acknowledgement mode come from the environment so one module serves every fault:

    RQ_BROKER=redis://127.0.0.1:6379/0 RQ_KEYPREFIX=mine: RQ_QUEUE=rq pipetrace run -- celery -A queue_app worker -c 2

``RQ_KEYPREFIX`` keeps every Redis key of the broker and the result backend under the test's own prefix
(the machine's Redis is shared).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from celery import Celery

app = Celery("queue_app", broker=os.environ.get("RQ_BROKER", "memory://"),
             backend=os.environ.get("RQ_BACKEND") or None)
app.conf.update(
    task_default_queue=os.environ.get("RQ_QUEUE", "rq"),
    worker_prefetch_multiplier=int(os.environ.get("RQ_PREFETCH", "1")),
    task_acks_late=os.environ.get("RQ_ACKS_LATE") == "1",
    task_reject_on_worker_lost=os.environ.get("RQ_REJECT_ON_LOST") == "1",
    task_ignore_result=not os.environ.get("RQ_BACKEND"),
    broker_connection_retry_on_startup=True,
    broker_connection_retry=True,
    broker_connection_max_retries=None,
    # a publish during a broker outage waits for the broker (up to ~60 s) instead of failing the chain
    task_publish_retry_policy={"max_retries": 120, "interval_start": 0.5, "interval_step": 0.5,
                               "interval_max": 0.5},
    result_expires=600,
)
if os.environ.get("RQ_KEYPREFIX"):
    _prefixed = {"global_keyprefix": os.environ["RQ_KEYPREFIX"]}
    app.conf.broker_transport_options = dict(app.conf.broker_transport_options or {}, **_prefixed)
    app.conf.result_backend_transport_options = _prefixed


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def noop() -> None:
    return None


@app.task
def sleepy(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(bind=True)
def fragile(self, marker: str, seconds: float) -> str:  # type: ignore[no-untyped-def]
    """Writes ``marker.<delivery>`` with its pid when it starts, then works for ``seconds`` (a redelivery
    only briefly): the test kills the process running the first delivery and lets the redelivery finish."""
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    Path(f"{marker}.{'redelivered' if redelivered else 'first'}").write_text(str(os.getpid()))
    time.sleep(0.2 if redelivered else seconds)
    return marker
