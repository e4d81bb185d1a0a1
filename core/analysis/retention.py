"""Tiered retention: how long a run is kept depends on how it ended.

Defaults: failed runs 90 days, other finished runs 14 days, runs the tail sampler kept only as a summary
(run span attribute ``pipetrace.sampling.kept`` = false) 1 day. Age counts from the run's end. A trace is
removed only when every run span in it has expired (a parent run keeps the child runs it triggered), and
a trace without a run span is a run still in progress: never removed. Optionally the pruned traces are
first archived: one gzip file of OTLP JSON lines (one ``ExportTraceServiceRequest`` per trace) per prune,
chained into a manifest, encrypted and signed under a key when one is given (:mod:`.archive`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import attributes as A
from ..store import SpanStore
from ..store import maintenance as M
from ..store.formats import to_otlp_json
from ..store.sqlite import _record
from ..util.ratelimit import warn_once_per
from .durations import human_duration

log = logging.getLogger("pipetrace.retention")
SAMPLED_ATTR = "pipetrace.sampling.kept"
DAY = 86400.0


@dataclass(frozen=True)
class RetentionPolicy:
    failed_s: float = 90 * DAY
    normal_s: float = 14 * DAY
    sampled_out_s: float = 1 * DAY

    def keep_for(self, row: M.RunRow) -> float:
        return {"sampled-out": self.sampled_out_s, "failed": self.failed_s}.get(tier(row), self.normal_s)

    def describe(self) -> str:
        return (f"failed {human_duration(self.failed_s)}, normal {human_duration(self.normal_s)}, "
                f"sampled-out {human_duration(self.sampled_out_s)}")


@dataclass
class PruneReport:
    traces: int = 0
    runs: int = 0
    spans: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    reusable_bytes: int = 0
    archive: Path | None = None
    by_tier: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False

    @property
    def freed_bytes(self) -> int:
        """Space given back: to the OS (file shrink after VACUUM) or to new spans (free pages)."""
        return max(0, self.bytes_before - self.bytes_after) + self.reusable_bytes

    def to_json(self) -> dict[str, Any]:
        return {"traces": self.traces, "runs": self.runs, "spans": self.spans, "by_tier": self.by_tier,
                "bytes_before": self.bytes_before, "bytes_after": self.bytes_after,
                "freed_bytes": self.freed_bytes, "archive": str(self.archive) if self.archive else None,
                "dry_run": self.dry_run}


def tier(row: M.RunRow) -> str:
    """sampled-out, failed or normal."""
    if row.sampled_out:
        return "sampled-out"
    if row.status == "ERROR" or (row.result or "") in A.FAILED_RESULTS:
        return "failed"
    return "normal"


def expired_traces(store: SpanStore, policy: RetentionPolicy, now_ns: int | None = None
                   ) -> tuple[list[str], int, dict[str, int]]:
    """(trace ids to remove, run spans in them, runs per tier) under ``policy`` at ``now_ns``."""
    now_ns = now_ns if now_ns is not None else time.time_ns()
    keep: dict[str, bool] = {}
    runs: dict[str, int] = {}
    tiers: dict[str, list[str]] = {}
    for row in M.run_rows(store, SAMPLED_ATTR):
        expired = row.end_ns + int(policy.keep_for(row) * 1e9) <= now_ns
        keep[row.trace_id] = keep.get(row.trace_id, False) or not expired
        runs[row.trace_id] = runs.get(row.trace_id, 0) + 1
        tiers.setdefault(row.trace_id, []).append(tier(row))
    doomed = sorted(t for t, k in keep.items() if not k)
    by_tier: dict[str, int] = {}
    for t in doomed:
        for name in tiers[t]:
            by_tier[name] = by_tier.get(name, 0) + 1
    return doomed, sum(runs[t] for t in doomed), by_tier


def _archived_documents(store: SpanStore, trace_ids: list[str],
                        progress: Callable[[int], None] | None) -> Iterator[tuple[dict[str, Any], int]]:
    for i in range(0, len(trace_ids), 200):
        part = trace_ids[i:i + 200]
        rows = M.trace_span_rows(store, part)
        for trace_id in part:
            spans = [_record(r) for r in rows.get(trace_id, [])]
            if spans:
                yield to_otlp_json(spans), len(spans)
        if progress is not None:
            progress(len(part))


def archive_traces(store: SpanStore, trace_ids: list[str], directory: Path,
                   progress: Callable[[int], None] | None = None, *, key: bytes | None = None) -> Path:
    """Write the traces as one new archive file in ``directory`` (one OTLP JSON line per trace, gzip;
    AES-GCM encrypted under ``key``) chained into its signed manifest (see :mod:`.archive`)."""
    from .archive import write_archive

    return write_archive(directory, _archived_documents(store, trace_ids, progress), key)


def prune(store: SpanStore, policy: RetentionPolicy | None = None, *, now_ns: int | None = None,
          archive_dir: Path | None = None, dry_run: bool = False, vacuum: bool = False,
          progress: Callable[[str, int, int], None] | None = None, archive_key: bytes | None = None) -> PruneReport:
    """Apply ``policy``; ``progress(phase, done, total)`` is called as work advances. With ``archive_dir``
    the expired traces are archived first (encrypted when ``archive_key`` is given); a failing archive
    stops the prune before anything is deleted."""
    policy = policy or RetentionPolicy()
    M.ensure_schema(store, duration_index=False)
    report = PruneReport(bytes_before=M.file_bytes(store), dry_run=dry_run)
    free_before = M.free_bytes(store)
    doomed, report.runs, report.by_tier = expired_traces(store, policy, now_ns)
    report.traces = len(doomed)
    if dry_run or not doomed:
        report.bytes_after = report.bytes_before
        return report
    done = [0]

    def tick(phase: str) -> Callable[[int], None]:
        done[0] = 0

        def inner(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress(phase, done[0], len(doomed))
        return inner

    if archive_dir is not None:
        report.archive = archive_traces(store, doomed, archive_dir, tick("archive"), key=archive_key)
    report.spans = M.delete_traces(store, doomed, progress=tick("delete"))
    if vacuum:
        M.vacuum(store)
    else:
        report.reusable_bytes = max(0, M.free_bytes(store) - free_before)
    report.bytes_after = M.file_bytes(store)
    return report


class BackgroundRetention:
    """Prunes every ``interval_s`` on a daemon thread, for long-running processes (viewer, alert watch).

    Failures are logged (rate-limited) and retried next round; they never reach the host process."""

    def __init__(self, store_path: Path, policy: RetentionPolicy | None = None, *, interval_s: float = 3600.0,
                 archive_dir: Path | None = None, archive_key: bytes | None = None) -> None:
        self.store_path = store_path
        self.archive_key = archive_key
        self.policy = policy or RetentionPolicy()
        self.interval_s = interval_s
        self.archive_dir = archive_dir
        self.last: PruneReport | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pipetrace-retention", daemon=True)

    def start(self) -> BackgroundRetention:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def run_once(self) -> PruneReport | None:
        store = SpanStore(self.store_path)
        try:
            self.last = prune(store, self.policy, archive_dir=self.archive_dir, archive_key=self.archive_key)
            if self.last.traces:
                log.info("pipetrace retention: removed %d runs (%d spans)", self.last.runs, self.last.spans)
            return self.last
        except Exception as exc:
            warn_once_per(log, "retention", "pipetrace: background retention failed: %r", exc)
            return None
        finally:
            store.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.interval_s)
