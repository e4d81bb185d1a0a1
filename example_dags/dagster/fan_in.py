"""A job with fan-in: three independent extracts, all feeding one ``combine`` op."""

from dagster import Definitions, In, Nothing, job, op


@op
def extract_a() -> int:
    return 1


@op
def extract_b() -> int:
    return 2


@op
def extract_c() -> int:
    return 3


@op
def combine(values: list[int]) -> int:
    return sum(values)


@op(ins={"after": In(Nothing)})
def publish() -> None:
    return None


@job
def fan_in_job() -> None:
    publish(after=combine([extract_a(), extract_b(), extract_c()]))


defs = Definitions(jobs=[fan_in_job])
