"""Trace headers on messages: writing the producer's context and publish time, reading them back.

Why in core: kombu and Celery both carry the W3C context and the publish time (queue wait) in message
headers, and a message system may keep them one level down: Celery merges ``apply_async(headers=...)``
into the top level, but eager runs, ``Task.retry`` and some producers leave them in a nested ``headers``
dict (celery#4875). So writes go to the top level and to a nested ``headers`` dict when there is one;
reads try every place, top level first.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import SpanContext

from ..carriers import inject_span_context
from .messaging import PUBLISHED_HEADER

TRACE_KEYS = ("traceparent", "tracestate", "baggage")
MAX_VALUE_CHARS = 200
"""A header value of ours longer than this (or not a printable string) is ignored by :func:`checked`:
any producer can write it, and it becomes a span attribute."""


def stamp(carrier: dict[str, Any], span_context: SpanContext, now_ns: int, context: Context | None = None
          ) -> dict[str, Any]:
    """``carrier`` with the send span's context (and ``context``'s baggage) and the publish time."""
    inject_span_context(carrier, span_context, context)
    carrier[PUBLISHED_HEADER] = str(now_ns)
    return carrier


def write(headers: MutableMapping[str, Any], values: Mapping[str, Any]) -> None:
    headers.update(values)
    nested = headers.get("headers")
    if nested is not None and isinstance(nested, MutableMapping):  # (None first: an ABC check is slow)
        nested.update(values)


def has(headers: Mapping[str, Any], key: str) -> bool:
    """Whether ``key`` is in the headers, at the top level or one level down."""
    if key in headers:
        return True
    nested = headers.get("headers")
    return nested is not None and isinstance(nested, Mapping) and key in nested


def checked(value: object, default: str) -> str:
    """``value`` if it is a usable header value of ours (a short printable string), else ``default``."""
    if isinstance(value, str) and 0 < len(value) <= MAX_VALUE_CHARS and value.isprintable():
        return value
    return default


def _is_mapping(value: object) -> bool:
    return type(value) is dict or isinstance(value, Mapping)  # the exact type first: an ABC check is slow


def _tops(source: Any) -> Sequence[Any]:
    if _is_mapping(source):
        return (source,)
    request_dict = getattr(source, "request_dict", None)  # a Celery worker Request keeps the message there
    if _is_mapping(request_dict):
        return (request_dict, getattr(source, "headers", None))
    return (getattr(source, "__dict__", None), getattr(source, "headers", None))


def read(source: Any, keys: Sequence[str] | frozenset[str], plain: tuple[type, ...] = ()) -> dict[str, Any]:
    """The values of ``keys`` in a message's headers: ``source`` is the headers mapping, or an object
    holding them (its ``request_dict`` or attributes, and its ``headers``), each read with up to two
    nested ``headers`` levels below it; the first place that has a key wins. ``plain``: types whose
    attributes are the message itself. ``keys`` as a frozenset: a caller reading the same keys per message
    (one set, made once)."""
    out: dict[str, Any] = {}
    seen: list[Any] = []  # the places read (a place met again: a cycle, or the same dict twice)
    wanted = keys if type(keys) is frozenset else _wanted(keys) if type(keys) is tuple else frozenset(keys)
    # its attributes are the message: no lookup that fails (an exception) per read
    for top in (source.__dict__,) if type(source) in plain else _tops(source):
        mapping, depth = top, 0
        # the place itself, then up to two nested ``headers`` levels (``_is_mapping`` inline, the exact type
        # first: once per task start)
        while depth < 3 and mapping is not None and (type(mapping) is dict or isinstance(mapping, Mapping)):
            for place in seen:
                if place is mapping:
                    break
            else:
                seen.append(mapping)
                # a place with few keys (a nested ``headers``) tested key by key; a large one (a task request's
                # attributes) in one set operation in C: most of its keys are none of ours
                for key in mapping if len(mapping) <= len(wanted) else mapping.keys() & wanted:
                    if key in wanted and key not in out and (value := mapping[key]) is not None:
                        out[key] = value
                mapping, depth = mapping.get("headers"), depth + 1
                continue
            break
    return out


@functools.lru_cache(maxsize=16)
def _wanted(keys: tuple[str, ...]) -> frozenset[str]:
    return frozenset(keys)


def message_headers(message: Any) -> Mapping[str, Any]:
    """A kombu message's headers (empty when it has none)."""
    headers = getattr(message, "headers", None)
    return headers if isinstance(headers, Mapping) else {}


def message_id(message: Any) -> Any:
    """A kombu message's id: its ``message_id`` property, a Celery task id header or its delivery tag."""
    props = getattr(message, "properties", None) or {}
    mid = props.get("message_id") if isinstance(props, Mapping) else None
    if mid is None:
        mid = message_headers(message).get("id")
    if mid is None:
        mid = getattr(message, "delivery_tag", None)
    return mid


def delivered_to(delivery_info: Any, default: str = "") -> tuple[str, str | None]:
    """(destination, routing key) a message was delivered by: the routing key, else the exchange
    (``default`` when neither is known; the routing key None when absent)."""
    info = delivery_info if type(delivery_info) is dict or isinstance(delivery_info, Mapping) else {}
    rk = info.get("routing_key")
    return str(rk or info.get("exchange") or default), (str(rk) if rk is not None else None)
