"""A step that fails on its first attempt and succeeds on the retry (``RetryPolicy``)."""

from dagster import Definitions, OpExecutionContext, RetryPolicy, job, op


class FlakyError(RuntimeError):
    """Raised by the first attempt of ``flaky``."""


@op
def fetch() -> int:
    return 41


@op(retry_policy=RetryPolicy(max_retries=2))
def flaky(context: OpExecutionContext, value: int) -> int:
    if context.retry_number == 0:
        raise FlakyError("transient failure on the first attempt")
    return value + 1


@op
def store(value: int) -> int:
    return value


@job
def retry_job() -> None:
    store(flaky(fetch()))


defs = Definitions(jobs=[retry_job])
