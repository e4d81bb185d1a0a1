"""Stopping and starting the machine's RabbitMQ application (``rabbitmqctl stop_app``/``start_app``)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager


def _ctl(*args: str, timeout: float = 120) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=timeout)


def wait_for_rabbitmq(timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ping = subprocess.run(["rabbitmq-diagnostics", "-q", "ping"], capture_output=True, timeout=60)
        if ping.returncode == 0:
            return
        time.sleep(1)
    raise AssertionError(f"RabbitMQ did not answer a ping within {timeout} s after start_app")


@contextmanager
def rabbitmq_stopped() -> Iterator[tuple[float, list[float]]]:
    """RabbitMQ's application is stopped inside the block and always started again (and answering) after
    it. Yields (stop time, [start time]) — the list is filled in when the block exits."""
    started: list[float] = []
    _ctl("stop_app")
    stopped_at = time.time()
    try:
        yield stopped_at, started
    finally:
        _ctl("start_app")
        _ctl("await_startup")
        wait_for_rabbitmq()
        started.append(time.time())
