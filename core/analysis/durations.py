"""Human durations ("90s", "15m", "24h", "14d", "2w") to seconds, for CLI options and config files."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?", re.IGNORECASE)


def parse_duration(text: str | float | int) -> float:
    """Seconds from ``"1h30m"``, ``"24h"``, ``"90"`` (seconds) or a number; ValueError names the input."""
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError(f"duration {text!r} is negative")
        return float(text)
    raw = text.strip().lower()
    pos, total = 0, 0.0
    while pos < len(raw):
        match = _PART.match(raw, pos)
        if not match or match.end() == pos:
            raise ValueError(f"duration {text!r} not understood; use e.g. 90s, 15m, 24h, 14d")
        total += float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
        pos = match.end()
        while pos < len(raw) and raw[pos] == " ":
            pos += 1
    if not raw:
        raise ValueError("empty duration")
    return total


def human_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
