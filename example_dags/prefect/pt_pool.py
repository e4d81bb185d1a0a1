"""A flow on Prefect's process-pool task runner: tasks run in spawned worker processes."""

from __future__ import annotations

from prefect import flow, task
from prefect.task_runners import ProcessPoolTaskRunner


@task
def base() -> int:
    return 1


@task
def double(x: int, offset: int) -> int:
    return 2 * x + offset


@task
def total(values: list[int]) -> int:
    return sum(values)


@flow(name="pt_pool", task_runner=ProcessPoolTaskRunner(max_workers=2))  # type: ignore[arg-type]
def pooled() -> int:
    offset = base.submit()
    doubled = double.map([1, 2, 3], offset=offset)
    return total.submit(doubled).result()  # type: ignore[arg-type]  # futures resolve to values


if __name__ == "__main__":
    print(pooled())
