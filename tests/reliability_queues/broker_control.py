"""Stopping and starting a RabbitMQ application mid-test — always a private node the test started
(``shared_services.PrivateRabbitMQ``), never the machine's shared RabbitMQ."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from shared_services import PrivateRabbitMQ


@contextmanager
def rabbitmq_stopped(node: PrivateRabbitMQ) -> Iterator[tuple[float, list[float]]]:
    """The node's application is stopped inside the block and always started again (and answering) after
    it. Yields (stop time, [start time]) — the list is filled in when the block exits."""
    started: list[float] = []
    node.ctl("stop_app")
    stopped_at = time.time()
    try:
        yield stopped_at, started
    finally:
        node.ctl("start_app")
        node.ctl("await_startup")
        started.append(time.time())
