"""Shared pieces of the benchmarks, so that none of them can flatter pipetrace by how it is run.

* :func:`paired_rounds`: every mode once per round, the order rotated each round (two modes alternate),
  so a noisy moment of the shared machine, a warm cache or a cold start hits every mode alike; each
  round also records the machine's load. ``order=shuffled``: a fresh permutation each round, for three or
  more modes when what one side leaves behind could bias the next (rotation keeps each mode's neighbours).
* :func:`spread` / :func:`fmt_spread`: min / median / max of a list, printed with every figure.
* :func:`paired_ratios`: a / b per round (the pairs ran next to each other), then their spread.
* :func:`median_ci`: a distribution-free 95 % confidence interval of a median (binomial order statistics),
  so a goal is called met or missed only when the whole interval is on one side of it.
* :func:`added_ratio`: pipetrace's added cost over the reference's, as the ratio of the two medians of
  per-round added values, with a paired bootstrap interval over rounds (the per-round ratios divide by a
  small noisy difference and can be wild; this interval is the one a goal on the ratio is judged by).
* :class:`SpanCounter`: a local OTLP/HTTP receiver that both sides export to; it decodes each request
  and counts the spans and bytes it got, so completeness (got / expected) is printed per side.
* :func:`tree_cpu`: CPU seconds of a process and all its descendants, every thread included.
* :func:`summary_row`: one ``| measure | before | after | reference | spread | load |`` row, the
  closing-note table made by the benchmark commands themselves (``--markdown`` prints only those).
"""

from __future__ import annotations

import math
import os
import random
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
TICK = os.sysconf("SC_CLK_TCK")
TABLE_HEADER = "| measure | before | after | reference | spread | load |\n| --- | --- | --- | --- | --- | --- |"


def load() -> str:
    """The 1/5/15-minute load averages (the machine is shared: a figure is printed with its load)."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f}/{five:.1f}/{fifteen:.1f}"


def rotated(modes: Sequence[str], round_no: int) -> list[str]:
    """The run order of ``round_no``: the modes rotated by the round number (two modes alternate)."""
    k = round_no % len(modes)
    return list(modes[k:]) + list(modes[:k])


def shuffled(modes: Sequence[str], round_no: int, seed: int = 24) -> list[str]:
    """The run order of ``round_no``: a permutation drawn afresh each round (seeded: a run can be repeated).
    Rotation keeps each mode's neighbours: with three or more modes, a mode always runs right after the same
    other one, and whatever one side leaves behind lands on the next as a bias; a shuffle makes it noise."""
    order = list(modes)
    random.Random(seed * 1_000_003 + round_no).shuffle(order)
    return order


def paired_rounds(modes: Sequence[str], rounds: int, run: Callable[[str, int], T], *,
                  echo: Callable[[str, int, T], None] | None = None,
                  order: Callable[[Sequence[str], int], list[str]] = rotated) -> tuple[dict[str, list[T]], list[str]]:
    """Run every mode once per round in ``order`` (rotating by default); (results per mode in round order,
    load per round)."""
    results: dict[str, list[T]] = {m: [] for m in modes}
    loads: list[str] = []
    for r in range(rounds):
        for mode in order(modes, r):
            value = run(mode, r)
            results[mode].append(value)
            if echo is not None:
                echo(mode, r, value)
        loads.append(load())
    return results, loads


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(min, median, max) of the values that are numbers (a paired ratio whose reference round added
    nothing is nan: it has no ratio, and is left out rather than poisoning the median)."""
    kept = [v for v in values if v == v] or [float("nan")]
    return min(kept), statistics.median(kept), max(kept)


def fmt_spread(values: Sequence[float], fmt: str = ".2f") -> str:
    low, mid, high = spread(values)
    dropped = sum(1 for v in values if v != v)
    note = f", {dropped} of {len(values)} rounds without a ratio" if dropped else ""
    return f"{mid:{fmt}} (min {low:{fmt}}, max {high:{fmt}}{note})"


def median_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """The widest-ranked order statistics (x_(k), x_(n-k+1)) that cover the median with probability >=
    ``level`` for any continuous distribution (no normality assumed); None under 6 values (no such k)."""
    kept = sorted(v for v in values if v == v)
    n, tail, k = len(kept), 0.0, 0
    while k < n // 2 and tail + math.comb(n, k) / 2**n <= (1 - level) / 2:
        tail += math.comb(n, k) / 2**n
        k += 1
    return (kept[k - 1], kept[n - k]) if k else None


@dataclass(frozen=True)
class AddedRatio:
    """``ours`` added over ``ref`` added, both paired per round with the same baseline."""

    of_medians: float  # median(ours) / median(ref); nan when the reference's median added is not positive
    ci: tuple[float, float] | None  # paired bootstrap percentile interval of ``of_medians``; None under 6 rounds
    ratios: list[float]  # the per-round ratios (nan where the reference's round added nothing)

    def ci_text(self) -> str:
        if self.ci is None:
            return "too few rounds for an interval"
        return f"95 % bootstrap CI {self.ci[0]:.2f}–{self.ci[1]:.2f}"


def _of_medians(ours: Sequence[float], ref: Sequence[float]) -> float:
    mid_ref = statistics.median(ref)
    return statistics.median(ours) / mid_ref if mid_ref > 0 else math.inf


def added_ratio(ours: Sequence[float], ref: Sequence[float], *, level: float = 0.95, resamples: int = 4000,
                seed: int = 24) -> AddedRatio:
    """Ratio of the medians of the added values, and its paired bootstrap interval: the rounds are resampled
    with replacement (a round keeps its pair: both sides ran in it), the ratio of medians taken of each
    resample. A resample whose reference added nothing by its median counts as an infinite ratio, so the
    upper bound is never made smaller by a round where the reference could not be measured."""
    ours, ref = list(ours), list(ref)
    mid = _of_medians(ours, ref)
    ci = None
    if len(ours) >= 6:
        draw = random.Random(seed)
        n = len(ours)
        boots = []
        for _ in range(resamples):
            picks = [draw.randrange(n) for _ in range(n)]
            boots.append(_of_medians([ours[i] for i in picks], [ref[i] for i in picks]))
        boots.sort()
        tail = (1 - level) / 2
        ci = (boots[int(tail * resamples)], boots[min(resamples - 1, int((1 - tail) * resamples))])
    return AddedRatio(mid if mid != math.inf else math.nan, ci, paired_ratios(ours, ref))


def fmt_ci(values: Sequence[float], fmt: str = ".3f") -> str:
    ci = median_ci(values)
    return f"95% CI of the median {ci[0]:{fmt}}–{ci[1]:{fmt}}" if ci else "too few rounds for a CI of the median"


def print_per_kind(cpu: dict[str, float], count: dict[str, int], runs: int, width: int = 22) -> None:
    """Thread CPU per kind of hook call, a run and each, largest first (the ``--hooks`` modes)."""
    for kind, spent in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<{width}} {count[kind] / runs:5.1f} a run  {spent / runs * 1e6:8.1f} µs a run  "
              f"{spent / count[kind] * 1e6:6.1f} µs each")


def paired_ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """a[i] / b[i] for each round (nan where b[i] is not positive)."""
    return [x / y if y > 0 else float("nan") for x, y in zip(a, b, strict=True)]


def load_range(loads: Sequence[str]) -> str:
    """The 1-minute load over the run, as ``min–max``."""
    ones = [float(x.split("/")[0]) for x in loads] or [os.getloadavg()[0]]
    return f"{min(ones):.1f}–{max(ones):.1f}"


def summary_row(measure: str, before: str, after: str, reference: str, spread_text: str, loads: Sequence[str]) -> str:
    return f"| {measure} | {before} | {after} | {reference} | {spread_text} | {load_range(loads)} |"


def report_on_off(runs: Mapping[str, Sequence[tuple[float, ...]]], loads: Sequence[str], spans: Sequence[int],
                  args: Any, *, name: str, title: str, script: str, per: int, unit: str, goal: float,
                  before: Sequence[str], labels: Sequence[str] = ("wall", "CPU")) -> list[str]:
    """Print ``title`` (with the exporters and the spans received per traced run), then each measure of paired
    ``off``/``on`` runs ((wall s, CPU s[, ...]) per round, named by ``labels``): each side's spread, the
    per-round ratios with a 95 % CI of their median, and the ms added per ``unit`` (``per`` of them a run).
    Return one closing-note row per measure that ``before`` has a figure for (``before``: the figures claimed
    until then; ``name`` starts each row), also printed as a table with ``args.markdown``."""
    title += f", exporters {args.exporters}; spans received per traced run {min(spans)}–{max(spans)}"
    measure = f"{name} {{label}}, with / without (`{script} --rounds {args.rounds}`, exporters {args.exporters})"
    print(title)
    rows = []
    for k, label in enumerate(labels):
        off, on = [r[k] for r in runs["off"]], [r[k] for r in runs["on"]]
        ratios = paired_ratios(on, off)
        added = [(b - a) / per * 1000 for a, b in zip(off, on, strict=True)]
        print(f"  {label} without pipetrace {fmt_spread(off, '.3f')} s, with {fmt_spread(on, '.3f')} s")
        print(f"       ratio per round {fmt_spread(ratios, '.3f')}, {fmt_ci(ratios)}  added per {unit} "
              f"{fmt_spread(added, '+.2f')} ms (goal: ratio <= {goal})")
        if k >= len(before):
            continue
        low, mid, high = spread(ratios)
        rows.append(summary_row(measure.format(label=label), before[k], f"**{mid:.3f}**", "untraced",
                                f"{low:.3f}–{high:.3f}", loads))
    if args.markdown:
        print(TABLE_HEADER)
        print("\n".join(rows))
    return rows


def tree_cpu(pid: int) -> tuple[float, float]:
    """User + system CPU seconds of ``pid`` itself and of its live descendants, all threads (from /proc)."""
    main = children = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            seconds = (int(fields[11]) + int(fields[12])) / TICK
            if p == pid:
                main += seconds
            else:
                children += seconds
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError, IndexError):
            continue
    return main, children


class SpanCounter:
    """A local OTLP/HTTP (protobuf) receiver that counts what it got; both sides of a comparison export
    to it, so neither side's export is skipped and a lost span shows in the completeness figure.

    ``cpu_s`` is the thread CPU its handlers spent on requests up to each reply: in a deployment the
    collector is another process, so a benchmark that runs the receiver in the measured process takes it
    out of the traced side's CPU (the reply's own write is left in: it errs against the traced side)."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        self.spans = 0
        self.bytes = 0
        self.requests = 0
        self.cpu_s = 0.0
        self.names: dict[str, int] = {}
        self._lock = threading.Lock()
        counter = self
        reply = ExportTraceServiceResponse().SerializeToString()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            started = 0.0

            def log_message(self, *args: Any) -> None:
                return None

            def handle_one_request(self) -> None:  # (waiting for a request on a kept connection costs no CPU)
                self.started = time.thread_time()
                super().handle_one_request()

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding", "") == "gzip":
                    import gzip

                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                names: dict[str, int] = {}
                count = 0
                for rs in request.resource_spans:
                    for ss in rs.scope_spans:
                        for span in ss.spans:
                            count += 1
                            names[span.name.split(" ")[0]] = names.get(span.name.split(" ")[0], 0) + 1
                with counter._lock:
                    counter.spans += count
                    counter.bytes += len(body)
                    counter.requests += 1
                    for k, v in names.items():
                        counter.names[k] = counter.names.get(k, 0) + v
                    counter.cpu_s += time.thread_time() - self.started  # before the reply: the sender waits for it
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> SpanCounter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.spans = self.bytes = self.requests = 0
            self.cpu_s = 0.0
            self.names = {}

    def wait_for(self, count: int, timeout_s: float = 60.0) -> bool:
        """Wait until ``count`` spans arrived; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.spans >= count:
                return True
            time.sleep(0.01)
        return self.spans >= count
