"""`python consumer.py`: a plain kombu producer and callback consumer (memory:// transport, one process)."""

from kombu import Connection, Exchange, Queue

queue = Queue("docs_orders", Exchange("docs_orders", type="direct"), routing_key="docs_orders")
seen: list[int] = []


def handle(body: dict, message) -> None:  # type: ignore[no-untyped-def]
    seen.append(body["n"])
    message.ack()


with Connection("memory://") as conn:
    with conn.Producer() as producer:
        for n in range(3):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key="docs_orders", declare=[queue])
    with conn.Consumer(queue, callbacks=[handle]):
        while len(seen) < 3:
            conn.drain_events(timeout=10)
assert seen == [0, 1, 2], seen
print(f"consumed {len(seen)} messages")
