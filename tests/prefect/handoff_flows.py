"""Prefect flows that hand data over in every way Prefect records in ``task_inputs`` (test_links)."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.task_runners import ProcessPoolTaskRunner


@task
def orders() -> list[int]:
    return [1, 2, 3]


@task
def customers() -> list[str]:
    return ["a", "b"]


@task
def join(left: Any, right: Any) -> int:
    return len(left) + len(right) if hasattr(left, "__len__") and hasattr(right, "__len__") else 0


@task
def double(x: int) -> int:
    return 2 * x


@task
def total(values: Any) -> int:
    if isinstance(values, dict):
        return sum(total.fn(v) for v in values.values())
    return sum(values) if isinstance(values, list) else int(values)


@flow
def direct_calls() -> int:
    return join(orders(), customers())  # plain values Prefect tracks as results


@flow
def submitted() -> int:
    left, right = orders.submit(), customers.submit()
    joined = join.submit(left, right)
    waited = join.submit([0], [0], wait_for=[joined])
    return total.submit([joined.result(), waited.result()]).result()


@flow
def mapped() -> int:
    doubled = double.map(orders())  # members map over a tracked result
    again = double.map(doubled)  # second order: each member reads one upstream member
    return total(again)  # a list of futures


@flow
def collections() -> int:
    a, b, c = double.submit(1), double.submit(2), double.submit(3)
    state = double(4, return_state=True)
    return total({"x": a, "y": [b, c], "z": state})  # futures and a state inside a collection


@flow
def child(values: list[int]) -> int:
    return total(values)


@flow
def with_subflow() -> int:
    got = orders()
    sub = child(got)  # subflow parameter
    return join([sub], customers())  # a subflow's result consumed by a task


@flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
def in_processes() -> int:
    nums = orders.submit()
    doubled = double.map(nums)
    return total.submit(doubled).result()


FLOWS = [direct_calls, submitted, mapped, collections, with_subflow]
