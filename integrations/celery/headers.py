"""Reading and writing trace headers on Celery messages, surviving the nested-headers quirk.

Celery merges ``apply_async(headers=...)`` into the top level of the message headers, where a worker
sees them as attributes of ``task.request`` — but eager runs, ``Task.retry`` and some producers leave
them one level down in ``request.headers`` or ``headers["headers"]`` (celery#4875). Writes go to the
top level (what Celery workers and opentelemetry-instrumentation-celery read) and to a nested
``headers`` dict when the message has one; reads try every place, top level first.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, MutableMapping
from typing import Any

from pipetrace.adapter.messaging import PUBLISHED_HEADER

PIPELINE_HEADER = "pipetrace_pipeline"
"""Name of the workflow's first task: the pipeline every task of the workflow reports. Not sent when
it is the task's own name (a workflow's first task), which is what a worker assumes without it."""
CHORD_HEADER = "pipetrace_chord_header"
"""Comma list of a chord's header task ids, written on the chord body so it can link to each."""
RUN_HEADER = "pipetrace_run"
"""The workflow's run id (``cicd.pipeline.run.id``) when it is not the message's Celery ``root_id``: the
members of a group, or every workflow a producer starts inside one traced block, are one run (see
docs/celery.md). Inherited by everything a task of the run publishes."""

MAX_PIPELINE_CHARS = 200
"""A ``pipetrace_pipeline`` header longer than this (or not a printable string) is ignored: any producer
can write it, and it becomes a span attribute and the store's pipeline column."""

TRACE_KEYS = ("traceparent", "tracestate", "baggage")
KEYS = (*TRACE_KEYS, PUBLISHED_HEADER, PIPELINE_HEADER, CHORD_HEADER, RUN_HEADER)


def write(headers: MutableMapping[str, Any], values: Mapping[str, Any]) -> None:
    headers.update(values)
    nested = headers.get("headers")
    if isinstance(nested, MutableMapping):
        nested.update(values)


def has_pipeline(headers: Mapping[str, Any]) -> bool:
    """Whether a message already names a pipeline, at the top level or one level down (a retry or a
    re-sent message keeps its headers: a stale name there must be overwritten, not left to be read)."""
    if PIPELINE_HEADER in headers:
        return True
    nested = headers.get("headers")
    return isinstance(nested, Mapping) and PIPELINE_HEADER in nested


def pipeline(values: Mapping[str, Any], default: str) -> str:
    """The workflow's pipeline name from the headers, or ``default`` when it is absent or unusable."""
    return _checked(values.get(PIPELINE_HEADER), default)


def run_id(values: Mapping[str, Any], default: str) -> str:
    """The workflow's run id from the headers, or ``default`` (the message's ``root_id``) when it is
    absent or unusable (any producer can write it: same rules as the pipeline name)."""
    return _checked(values.get(RUN_HEADER), default)


def _checked(value: object, default: str) -> str:
    if isinstance(value, str) and 0 < len(value) <= MAX_PIPELINE_CHARS and value.isprintable():
        return value
    return default


def _is_mapping(value: object) -> bool:
    return type(value) is dict or isinstance(value, Mapping)  # the exact type first: an ABC check is slow


def _from_mapping(source: Mapping[str, Any], out: dict[str, Any]) -> None:
    for key in KEYS:
        if key not in out:
            value = source.get(key)
            if value is not None:
                out[key] = value


@functools.cache
def _task_context() -> type:
    from celery.app.task import Context

    return Context


def _sources(request: Any) -> list[Mapping[str, Any]]:
    if _is_mapping(request):
        return [request]
    sources: list[Mapping[str, Any]] = []
    request_dict = getattr(request, "request_dict", None)  # (a task's Context is read by read() itself)
    if request_dict is not None and _is_mapping(request_dict):  # celery.worker.request.Request
        sources.append(request_dict)
    else:
        attrs = getattr(request, "__dict__", None)
        if attrs is not None and _is_mapping(attrs):
            sources.append(attrs)
    nested = getattr(request, "headers", None)
    if nested is not None and _is_mapping(nested):
        sources.append(nested)
    return sources


def read(request: Any) -> dict[str, Any]:
    """Our header values from a task request (``task.request``), a worker ``Request`` or a mapping."""
    out: dict[str, Any] = {}
    if type(request) is _task_context():
        # every task start: the places _sources gives, in the same order, without asking the Context
        # for request_dict (a failed attribute lookup, an exception, on every task)
        attrs = request.__dict__
        _from_mapping(attrs, out)
        nested = attrs.get("headers")
        if nested is not None and nested is not attrs and _is_mapping(nested):
            _from_mapping(nested, out)
            deeper = nested.get("headers")
            if deeper is not None and deeper is not nested and deeper is not attrs and _is_mapping(deeper):
                _from_mapping(deeper, out)
        return out
    seen: list[int] = []
    for source in _sources(request):
        for mapping in (source, source.get("headers")):
            if mapping is not None and id(mapping) not in seen and _is_mapping(mapping):  # a Context's headers twice
                seen.append(id(mapping))
                _from_mapping(mapping, out)
    return out
