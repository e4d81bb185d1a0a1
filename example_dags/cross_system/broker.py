"""Which broker the cross-system example uses: RabbitMQ or Redis when one answers on loopback, else kombu's
in-process ``memory://`` transport (the worker runs in the same process, so that is enough).

``PIPETRACE_DEMO_BROKER`` overrides the choice (any kombu URL, e.g. ``memory://``).
"""

from __future__ import annotations

import importlib.util
import os
import socket
from dataclasses import dataclass

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
REDIS = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Broker:
    url: str
    why: str  # one line for the user: what was chosen and why


def _answers(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def choose() -> Broker:
    forced = os.environ.get("PIPETRACE_DEMO_BROKER")
    if forced:
        return Broker(forced, f"{forced} (from PIPETRACE_DEMO_BROKER)")
    if _answers(5672):
        return Broker(RABBITMQ, "RabbitMQ on 127.0.0.1:5672")
    redis_up = _answers(6379)
    if redis_up and importlib.util.find_spec("redis") is not None:
        return Broker(REDIS, "Redis on 127.0.0.1:6379")
    why = "no RabbitMQ on 127.0.0.1:5672"
    why += ", Redis answers but the `redis` package is not installed" if redis_up else ", no Redis on :6379"
    return Broker("memory://", f"kombu memory:// transport, in this process ({why})")
