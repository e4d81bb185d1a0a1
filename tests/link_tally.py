"""The closing-note tally of issue 20, shared by the Airflow and Prefect link tests: per run, the edges the
orchestrator recorded against the links in the trace (goal: equal, 0 dangling, 0 spurious)."""

from __future__ import annotations

from collections.abc import Set
from typing import Any


class LinkTally:
    def __init__(self) -> None:
        self.counts = {"runs": 0, "recorded": 0, "links": 0, "dangling": 0, "spurious": 0, "missing": 0}

    def add(self, recorded: Set[Any], links: Set[Any], dangling: int) -> None:
        c = self.counts
        c["runs"] += 1
        c["recorded"] += len(recorded)
        c["links"] += len(links)
        c["dangling"] += dangling
        c["spurious"] += len(links - recorded)
        c["missing"] += len(recorded - links)

    def line(self, what: str) -> str:
        return f"\n{what}: " + ", ".join(f"{k}={v}" for k, v in self.counts.items())
