"""Dagster attribute names and step-key helpers (no Dagster import: cheap and testable alone)."""

from __future__ import annotations

SYSTEM = "dagster"

JOB = "dagster.job"
RUN_ID = "dagster.run_id"
STEP_KEY = "dagster.step_key"
OP = "dagster.op"
ASSET_KEY = "dagster.asset_key"
PARTITION_KEY = "dagster.partition_key"
MAPPING_KEY = "dagster.mapping_key"
OUTPUT = "dagster.output"
INPUT = "dagster.input"
SKIP_REASON = "dagster.skip_reason"

TRACEPARENT_TAG = "traceparent"
TRACESTATE_TAG = "tracestate"
PARTITION_TAG = "dagster/partition"


def split_step_key(step_key: str) -> tuple[str, str | None]:
    """``process[alpha]`` → (``process``, ``alpha``); an unmapped key → (key, None).

    Mapped steps share one low-cardinality span name (``task process``) under one batch span; the
    mapping key goes into an attribute."""
    if step_key.endswith("]") and "[" in step_key:
        base, _, rest = step_key.partition("[")
        return base, rest[:-1]
    return step_key, None


def op_name(step_key: str) -> str:
    """The op (node) name of a step: the last part of ``graph.op[key]``."""
    return split_step_key(step_key)[0].rsplit(".", 1)[-1]
