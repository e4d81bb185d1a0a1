"""Example Prefect flows for pipetrace: fan-in, ``.map()``, a subflow, a task retried twice.

Run with tracing and no edits: ``pipetrace run -- python example_dags/prefect/pt_flows.py``.
Each flow returns its value; tests run them in Prefect's ephemeral mode and compare span trees.
"""

from __future__ import annotations

import threading

from prefect import flow, task

_attempts: dict[str, int] = {}
_attempts_lock = threading.Lock()


@task
def extract_orders() -> list[int]:
    return [3, 1, 2]


@task
def extract_prices() -> dict[int, float]:
    return {1: 1.5, 2: 2.0, 3: 4.0}


@task
def join(orders: list[int], prices: dict[int, float]) -> float:
    return sum(prices[o] for o in orders)


@flow(name="pt_fan_in")
def fan_in() -> float:
    """Two extracts feed one join (a fan-in: two result links)."""
    orders = extract_orders.submit()
    prices = extract_prices.submit()
    return join.submit(orders, prices).result()  # type: ignore[call-overload]  # futures resolve


@task
def square(x: int) -> int:
    return x * x


@task
def total(values: list[int]) -> int:
    return sum(values)


@flow(name="pt_mapped")
def mapped(n: int = 3) -> int:
    """``square.map`` over n items (one batch), then a fan-in of the mapped results."""
    squares = square.map(list(range(n)))
    return total(squares)  # type: ignore[arg-type]  # futures resolve to values


@task
def load(rows: int) -> int:
    return rows


@flow(name="pt_child")
def child(rows: int) -> int:
    return load(rows)


@flow(name="pt_parent")
def parent() -> int:
    """A flow calling a subflow: the subflow's run nests under the parent's run."""
    rows = extract_orders()
    return child(len(rows))


@task(retries=2, retry_delay_seconds=0)
def flaky(key: str) -> str:
    """Fails on its first two attempts (per key), succeeds on the third."""
    with _attempts_lock:
        _attempts[key] = _attempts.get(key, 0) + 1
        n = _attempts[key]
    if n < 3:
        raise RuntimeError(f"attempt {n} failed")
    return f"ok after {n}"


@flow(name="pt_retry")
def retried(key: str = "default") -> str:
    return flaky(key)


def main() -> None:
    print(fan_in(), mapped(), parent(), retried("main"))


if __name__ == "__main__":
    main()
