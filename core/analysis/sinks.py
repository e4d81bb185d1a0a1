"""Where alerts go: a log line, an HTTP POST of JSON (webhook), or a shell command fed JSON on stdin."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import urllib.request
from typing import Any

from .alert_config import Sink

log = logging.getLogger("pipetrace.alerts")


class SinkError(RuntimeError):
    pass


def send(sink: Sink, payload: dict[str, Any]) -> None:
    """Deliver one alert; raises :class:`SinkError` so the caller can retry it next round."""
    if sink.type == "log":
        log.warning("pipetrace alert [%s] %s %s", payload.get("rule"), payload.get("message"),
                    payload.get("viewer_link") or "")
        return
    body = json.dumps(payload, default=str).encode()
    if sink.type == "webhook":
        assert sink.url is not None
        headers = {"Content-Type": "application/json", "User-Agent": "pipetrace-alerts", **sink.headers}
        request = urllib.request.Request(sink.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=sink.timeout_s) as response:  # noqa: S310
                if response.status >= 300:
                    raise SinkError(f"webhook {sink.name}: HTTP {response.status}")
        except OSError as exc:
            raise SinkError(f"webhook {sink.name}: {exc}") from None
        return
    if sink.type == "command":
        assert sink.command is not None
        env = dict(os.environ)
        env.update({"PIPETRACE_ALERT_RULE": str(payload.get("rule", "")),
                    "PIPETRACE_ALERT_TRACE_ID": str(payload.get("trace_id") or ""),
                    "PIPETRACE_ALERT_MESSAGE": str(payload.get("message", "")),
                    "PIPETRACE_ALERT_LINK": str(payload.get("viewer_link") or "")})
        try:
            done = subprocess.run(sink.command, shell=True, input=body, env=env, timeout=sink.timeout_s,  # noqa: S602
                                  capture_output=True, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SinkError(f"command {sink.name}: {exc}") from None
        if done.returncode != 0:
            raise SinkError(f"command {sink.name}: exit {done.returncode}: {done.stderr[-300:]!r}")
        return
    raise SinkError(f"unknown sink type {sink.type!r}")
