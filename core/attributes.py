"""Attribute and span-name vocabulary shared by the core and every adapter.

OTel CICD and messaging semantic-convention names where they exist, the ``pipetrace.`` namespace for what
they lack. Adapters import names from here so a rename happens in one place.
"""

from __future__ import annotations

PIPELINE_NAME = "cicd.pipeline.name"
PIPELINE_RUN_ID = "cicd.pipeline.run.id"
PIPELINE_RESULT = "cicd.pipeline.result"
TASK_NAME = "cicd.pipeline.task.name"
TASK_RUN_ID = "cicd.pipeline.task.run.id"
TASK_RESULT = "cicd.pipeline.task.run.result"
ERROR_TYPE = "error.type"

SYSTEM = "pipetrace.system"
TRY_NUMBER = "pipetrace.task.try_number"
MAP_INDEX = "pipetrace.task.map_index"
MAP_KEY = "pipetrace.task.map_key"  # a mapped instance named by a string key (Dagster's mapping key), not a number
QUEUED_MS = "pipetrace.task.queued_ms"
BATCH_INDEX = "pipetrace.batch.index"
BATCH_SIZE = "pipetrace.batch.size"
LINK_KIND = "pipetrace.link.kind"
SYNTHETIC = "pipetrace.synthetic"
"""Set on spans built after the fact from an orchestrator record (never ran, worker died): a live span
reported for the same ids wins over it in the store."""

MESSAGING_SYSTEM = "messaging.system"
MESSAGING_DESTINATION = "messaging.destination.name"
MESSAGING_OPERATION_TYPE = "messaging.operation.type"
MESSAGING_OPERATION_NAME = "messaging.operation.name"
MESSAGING_MESSAGE_ID = "messaging.message.id"
MESSAGING_BATCH_COUNT = "messaging.batch.message_count"

SYSTEMS = ("airflow", "dagster", "prefect", "celery", "kombu", "python")
LINK_KINDS = ("xcom", "asset", "result", "message")

# cicd.pipeline.result / cicd.pipeline.task.run.result values (OTel CICD conventions) plus the states
# orchestrators have that the convention lacks.
RESULT_SUCCESS = "success"
RESULT_FAILURE = "failure"
RESULT_ERROR = "error"
RESULT_TIMEOUT = "timeout"
RESULT_CANCELLATION = "cancellation"
RESULT_SKIP = "skip"
RESULT_RETRY = "retry"
FAILED_RESULTS = frozenset({RESULT_FAILURE, RESULT_ERROR, RESULT_TIMEOUT})


def run_span_name(pipeline: str) -> str:
    return f"run {pipeline}"


def task_span_name(task: str) -> str:
    return f"task {task}"


def batch_span_name(task: str) -> str:
    return f"batch {task}"
