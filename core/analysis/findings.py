"""What the store's two audits (coverage, secrets) report alike: how much was read, and findings that make
the report unclean, tallied by one of their fields for the summary line and ``--json``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar


class _Finding(Protocol):
    def to_json(self) -> dict[str, Any]: ...


F = TypeVar("F", bound=_Finding)


@dataclass
class FindingsReport(Generic[F]):
    traces: int = 0
    spans: int = 0
    findings: list[F] = field(default_factory=list)
    tally_field: ClassVar[str] = "kind"
    """The finding field the summary counts by (its JSON key is ``tally_key``)."""
    tally_key: ClassVar[str] = "counts"

    @property
    def clean(self) -> bool:
        return not self.findings

    def tally(self) -> dict[str, int]:
        return dict(Counter(getattr(f, self.tally_field) for f in self.findings))

    def to_json(self) -> dict[str, Any]:
        return {"traces": self.traces, "spans": self.spans, "clean": self.clean, self.tally_key: self.tally(),
                "findings": [f.to_json() for f in self.findings]}
