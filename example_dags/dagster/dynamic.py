"""A dynamic fan-out: ``split`` yields one output per chunk, ``process`` runs once per chunk
(``.map``) and ``total`` collects them (fan-in of the mapped steps)."""

from dagster import Definitions, DynamicOut, DynamicOutput, job, op

CHUNKS = ("alpha", "beta", "gamma")


@op(out=DynamicOut())
def split():
    for index, name in enumerate(CHUNKS):
        yield DynamicOutput(index + 1, mapping_key=name)


@op
def process(value: int) -> int:
    return value * 10


@op
def total(values: list[int]) -> int:
    return sum(values)


@job
def dynamic_job() -> None:
    total(split().map(process).collect())


defs = Definitions(jobs=[dynamic_job])
