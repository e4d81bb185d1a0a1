"""`dagster ... -f my_defs.py -j my_job`: a two-step job."""

from dagster import Definitions, job, op


@op
def extract() -> list[int]:
    return [1, 2, 3]


@op
def load(rows: list[int]) -> int:
    return sum(rows)


@job
def my_job() -> None:
    load(extract())


defs = Definitions(jobs=[my_job])
