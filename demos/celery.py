"""``pipetrace demo`` part for Celery/kombu: a Celery task that publishes 20 messages through kombu
and consumes them in two traced batches. Uses ``memory://`` so it needs no broker (the task runs
eagerly in this process); returns the trace id."""

from __future__ import annotations

import uuid


def run() -> str | None:
    from celery import Celery
    from kombu import Connection, Exchange, Queue
    from opentelemetry import trace
    from pipetrace.integrations import celery as pc
    from pipetrace.integrations import kombu as pk

    pc.instrument()
    pk.instrument()
    app = Celery("pipetrace_demo", broker="memory://", backend="cache+memory://")
    app.conf.task_always_eager = True
    name = f"demo-{uuid.uuid4().hex[:6]}"
    queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
    found: list[str] = []

    @app.task(name="demo.stage")
    def stage(rows: int) -> int:
        found.append(f"{trace.get_current_span().get_span_context().trace_id:032x}")
        done = 0
        with Connection("memory://") as conn:
            with conn.Producer() as producer:
                for i in range(rows):
                    producer.publish({"row": i}, exchange=queue.exchange, routing_key=name, declare=[queue])
            for index, batch in enumerate(pk.consume_batches(conn, queue, 10, timeout=0.2)):
                with pk.process_batch(batch, index=index):
                    for message in batch:
                        message.ack()
                done += len(batch)
        return done

    stage.delay(20)
    return found[0] if found else None
