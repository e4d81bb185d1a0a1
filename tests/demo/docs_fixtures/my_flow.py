"""`python my_flow.py`: a Prefect flow with two tasks."""

from prefect import flow, task


@task
def extract() -> list[int]:
    return [1, 2, 3]


@task
def load(rows: list[int]) -> int:
    return sum(rows)


@flow(name="my_flow")
def my_flow() -> int:
    return load(extract())


if __name__ == "__main__":
    assert my_flow() == 6
