"""Attribute and span-name vocabulary shared by the core and every adapter.

OTel CICD and messaging semantic-convention names where they exist, the ``pipetrace.`` namespace for what
they lack. Adapters import names from here so a rename happens in one place.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Final

from opentelemetry.semconv._incubating.attributes import cicd_attributes as _cicd
from opentelemetry.semconv._incubating.attributes import messaging_attributes as _messaging
from opentelemetry.semconv.attributes import error_attributes as _error
from opentelemetry.semconv.attributes import service_attributes as _service

# the CICD and messaging conventions are still "incubating" in opentelemetry-semantic-conventions: that
# subpackage is where the package publishes them (the contrib instrumentations import them from there)
from opentelemetry.trace import SpanKind

PIPELINE_NAME: Final = _cicd.CICD_PIPELINE_NAME
PIPELINE_RUN_ID: Final = _cicd.CICD_PIPELINE_RUN_ID
PIPELINE_RESULT: Final = _cicd.CICD_PIPELINE_RESULT
TASK_NAME: Final = _cicd.CICD_PIPELINE_TASK_NAME
TASK_RUN_ID: Final = _cicd.CICD_PIPELINE_TASK_RUN_ID
TASK_RESULT: Final = _cicd.CICD_PIPELINE_TASK_RUN_RESULT
ERROR_TYPE: Final = _error.ERROR_TYPE
SERVICE_NAME: Final = _service.SERVICE_NAME

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

MESSAGING_SYSTEM: Final = _messaging.MESSAGING_SYSTEM
MESSAGING_DESTINATION: Final = _messaging.MESSAGING_DESTINATION_NAME
MESSAGING_OPERATION_TYPE: Final = _messaging.MESSAGING_OPERATION_TYPE
MESSAGING_OPERATION_NAME: Final = _messaging.MESSAGING_OPERATION_NAME
MESSAGING_MESSAGE_ID: Final = _messaging.MESSAGING_MESSAGE_ID
MESSAGING_BATCH_COUNT: Final = _messaging.MESSAGING_BATCH_MESSAGE_COUNT

SYSTEMS = ("airflow", "dagster", "prefect", "celery", "kombu", "python")
LINK_KINDS = ("xcom", "asset", "result", "message")

# cicd.pipeline.result / cicd.pipeline.task.run.result values (OTel CICD conventions) plus the states
# orchestrators have that the convention lacks.
RESULT_SUCCESS: Final[str] = _cicd.CicdPipelineResultValues.SUCCESS.value
RESULT_FAILURE: Final[str] = _cicd.CicdPipelineResultValues.FAILURE.value
RESULT_ERROR: Final[str] = _cicd.CicdPipelineResultValues.ERROR.value
RESULT_TIMEOUT: Final[str] = _cicd.CicdPipelineResultValues.TIMEOUT.value
RESULT_CANCELLATION: Final[str] = _cicd.CicdPipelineResultValues.CANCELLATION.value
RESULT_SKIP: Final[str] = _cicd.CicdPipelineResultValues.SKIP.value
RESULT_RETRY = "retry"  # not in the convention
FAILED_RESULTS = frozenset({RESULT_FAILURE, RESULT_ERROR, RESULT_TIMEOUT})


RUN_SPAN_PREFIX: Final[str] = "run "
_SERVER_KINDS: Final = ("SERVER", SpanKind.SERVER)


def run_span_name(pipeline: str) -> str:
    return f"{RUN_SPAN_PREFIX}{pipeline}"


def is_run_span(name: str, kind: object, attributes: Container[str]) -> bool:
    """A pipeline run's own span: named ``run {pipeline}``, kind SERVER (the ``SpanKind`` or its name, as the
    store keeps it) and carrying the run id; a user's or an orchestrator's span that is only *named* ``run …``
    is not. The one rule for the store's ``is_run`` column, tail sampling's trigger and the store queue's
    run-end write."""
    return name.startswith(RUN_SPAN_PREFIX) and kind in _SERVER_KINDS and PIPELINE_RUN_ID in attributes


def task_span_name(task: str) -> str:
    return f"task {task}"


def batch_span_name(task: str) -> str:
    return f"batch {task}"
