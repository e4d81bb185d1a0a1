"""The alert config file: rules and sinks, TOML (``alerts.toml``) or JSON, validated with clear errors.

```toml
viewer_url = "http://127.0.0.1:8765"   # links in alerts: {viewer_url}/#/run/{trace_id}
dedup_window = "7d"                    # the same alert (rule + subject) is sent once per window

[[sink]]
name = "ops"
type = "webhook"                       # log | webhook | command
url = "https://hooks.example/pipetrace"

[[rule]]
name = "etl-slow"
type = "slow_run"                      # slow_run | error_rate | deadline | stopped_tracing | secrets
pipeline = "etl*"                      # glob; default "*"
factor = 2.0
sinks = ["ops"]                        # default: every sink
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .durations import parse_duration

RULE_TYPES = ("slow_run", "error_rate", "deadline", "stopped_tracing", "secrets")
SINK_TYPES = ("log", "webhook", "command")


class AlertConfigError(ValueError):
    """The alert config cannot be used; the message names the file, the entry and the problem."""


@dataclass(frozen=True)
class Rule:
    name: str
    type: str
    pipeline: str = "*"
    task: str = "*"
    window_s: float = 86400.0        # slow_run / error_rate / secrets: how far back to look
    factor: float = 2.0              # slow_run: duration > baseline median × factor
    min_history: int = 10            # slow_run: earlier runs needed for a baseline
    threshold: float = 0.5           # error_rate: failed / attempts at or above this
    min_count: int = 3               # error_rate: attempts needed in the window
    by: str | None = None            # deadline: "HH:MM" local time by which a run must have finished
    max_duration_s: float | None = None  # deadline: a run in progress longer than this
    runs: int = 3                    # stopped_tracing: recent runs in which the task is absent
    max_per_hour: int = 20           # rate limit of this rule's alerts
    sinks: tuple[str, ...] = ()      # sink names; empty = all
    severity: str = "warning"


@dataclass(frozen=True)
class Sink:
    name: str
    type: str
    url: str | None = None
    command: str | None = None
    timeout_s: float = 5.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertConfig:
    rules: tuple[Rule, ...]
    sinks: tuple[Sink, ...]
    viewer_url: str = "http://127.0.0.1:8765"
    dedup_window_s: float = 7 * 86400.0

    def sinks_for(self, rule: Rule) -> list[Sink]:
        if not rule.sinks:
            return list(self.sinks)
        return [s for s in self.sinks if s.name in rule.sinks]


def _dur(where: str, key: str, value: Any) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise AlertConfigError(f"{where}: {key}: {exc}") from None


def _kind(where: str, what: str, raw: dict[str, Any], index: int, allowed: tuple[str, ...]) -> str:
    """The entry's ``type``, or a clear error naming the entry and the allowed types."""
    kind = raw.get("type")
    if kind not in allowed:
        raise AlertConfigError(f"{where}: {what} #{index + 1}: type {kind!r}; use one of {', '.join(allowed)}")
    return str(kind)


def _rule(where: str, raw: dict[str, Any], index: int) -> Rule:
    kind = _kind(where, "rule", raw, index, RULE_TYPES)
    known = set(Rule.__dataclass_fields__) | {"window", "max_duration"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise AlertConfigError(f"{where}: rule #{index + 1}: unknown keys {unknown}")
    kw: dict[str, Any] = {k: v for k, v in raw.items() if k in Rule.__dataclass_fields__}
    kw.setdefault("name", f"{kind}-{index + 1}")
    if "window" in raw:
        kw["window_s"] = _dur(where, "window", raw["window"])
    if "max_duration" in raw:
        kw["max_duration_s"] = _dur(where, "max_duration", raw["max_duration"])
    if "sinks" in raw:
        kw["sinks"] = tuple(raw["sinks"])
    if kind == "deadline":
        if not raw.get("by") and "max_duration" not in raw:
            raise AlertConfigError(f"{where}: rule {kw['name']!r}: deadline needs by = \"HH:MM\" or max_duration")
        if raw.get("by"):
            try:
                hh, mm = str(raw["by"]).split(":")
                assert 0 <= int(hh) < 24 and 0 <= int(mm) < 60
            except Exception:
                raise AlertConfigError(f"{where}: rule {kw['name']!r}: by={raw['by']!r} is not HH:MM") from None
    try:
        return Rule(**kw)
    except TypeError as exc:
        raise AlertConfigError(f"{where}: rule #{index + 1}: {exc}") from None


def _sink(where: str, raw: dict[str, Any], index: int) -> Sink:
    kind = _kind(where, "sink", raw, index, SINK_TYPES)
    if kind == "webhook" and not str(raw.get("url", "")).startswith(("http://", "https://")):
        raise AlertConfigError(f"{where}: sink #{index + 1}: webhook needs url = \"http(s)://…\"")
    if kind == "command" and not raw.get("command"):
        raise AlertConfigError(f"{where}: sink #{index + 1}: command sink needs command = \"…\"")
    return Sink(name=str(raw.get("name", f"{kind}-{index + 1}")), type=kind, url=raw.get("url"),
                command=raw.get("command"), timeout_s=_dur(where, "timeout", raw.get("timeout", 5)),
                headers={str(k): str(v) for k, v in (raw.get("headers") or {}).items()})


def parse(raw: dict[str, Any], where: str = "alert config") -> AlertConfig:
    rules = [_rule(where, r, i) for i, r in enumerate(raw.get("rule", raw.get("rules", [])))]
    sinks = [_sink(where, s, i) for i, s in enumerate(raw.get("sink", raw.get("sinks", [])))] or [
        Sink(name="log", type="log")]
    names = {s.name for s in sinks}
    for rule in rules:
        missing = [n for n in rule.sinks if n not in names]
        if missing:
            raise AlertConfigError(f"{where}: rule {rule.name!r} names unknown sinks {missing}")
    return AlertConfig(tuple(rules), tuple(sinks), viewer_url=str(raw.get("viewer_url", AlertConfig.viewer_url)),
                       dedup_window_s=_dur(where, "dedup_window", raw.get("dedup_window", "7d")))


def load(path: Path) -> AlertConfig:
    from ..config.files import read_config_file

    raw = read_config_file(path, AlertConfigError)
    return parse(raw, str(path))
