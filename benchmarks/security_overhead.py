"""Cost of the viewer's access control and of encrypted archives, each measured side by side in one run.

    .venvs/core/bin/python benchmarks/security_overhead.py [--rounds 7] [--traces 400]

1. ``/api/runs`` and ``/api/trace/<id>`` on an in-process viewer: no access control vs an access file
   (a scoped token and an admin token), requests interleaved in paired rounds over keep-alive HTTP.
2. Archiving the same traces: plain gzip + chained manifest vs AES-256-GCM + signed manifest, then
   ``verify`` of each (which decrypts and decompresses every file), interleaved in paired rounds.

Prints min/median/max per variant and the median ratio to the unprotected one.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pipetrace import attributes as A
from pipetrace.analysis import archive as AR
from pipetrace.store import SpanRecord, SpanStore
from pipetrace.store.formats import to_otlp_json
from pipetrace.ui import access as AC
from pipetrace.ui.server import make_server, serve_in_thread

S = 10**9


def seed(store: SpanStore, traces: int) -> list[list[SpanRecord]]:
    """``traces`` runs of 12 spans over 8 pipelines in 2 systems."""
    out = []
    t0 = time.time_ns() - 3600 * S
    for n in range(traces):
        system, pipeline = ("airflow", "celery")[n % 2], f"team{n % 8}_etl"
        base = {A.SYSTEM: system, A.PIPELINE_NAME: pipeline, A.PIPELINE_RUN_ID: f"run-{n}"}
        tid, start = f"{n + 1:032x}", t0 + n * S
        spans = [SpanRecord(tid, f"{n + 1:012x}0001", None, f"run {pipeline}", "SERVER", start, start + 10 * S, "OK",
                            attributes={**base, A.PIPELINE_RESULT: "success"}, resource={"service.name": "bench"})]
        for k in range(11):
            spans.append(SpanRecord(tid, f"{n + 1:012x}{k + 2:04x}", spans[0].span_id, f"task t{k}", "INTERNAL",
                                    start + k * S // 2, start + (k + 1) * S // 2, "OK",
                                    attributes={**base, A.TASK_NAME: f"t{k}", "rows": k * 100, "note": "x" * 40},
                                    resource={"service.name": "bench"}))
        out.append(spans)
    store.write([s for t in out for s in t])
    return out


def summary(label: str, values: list[float], reference: list[float] | None, unit: str = "ms") -> None:
    med = statistics.median(values)
    ratio = f"  ×{med / statistics.median(reference):.2f}" if reference else ""
    print(f"  {label:<34} min {min(values):8.2f}  median {med:8.2f}  max {max(values):8.2f} {unit}{ratio}")


def viewer_rounds(store: SpanStore, rounds: int, per_round: int, trace_id: str) -> None:
    tokens = {k: AC.new_token() for k in ("scoped", "admin")}
    config = AC.parse({"role": [{"name": "team0", "pipelines": ["team0_*"], "systems": ["airflow"]}],
                       "token": [{"name": "s", "role": "team0", "sha256": tokens["scoped"][1]},
                                 {"name": "a", "role": "admin", "sha256": tokens["admin"][1]}]})
    servers = {"open": make_server(store, port=0), "access file": make_server(store, port=0, access=config)}
    for srv in servers.values():
        serve_in_thread(srv)
    variants: dict[str, tuple[str, dict[str, str]]] = {
        "no access control": ("open", {}),
        "scoped token": ("access file", {"Authorization": f"Bearer {tokens['scoped'][0]}"}),
        "admin token": ("access file", {"Authorization": f"Bearer {tokens['admin'][0]}"}),
    }
    conns = {name: http.client.HTTPConnection("127.0.0.1", servers[srv].server_address[1])
             for name, (srv, _) in variants.items()}
    for path in ("/api/runs?limit=200", f"/api/trace/{trace_id}"):
        times: dict[str, list[float]] = {name: [] for name in variants}
        names = list(variants)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:  # rotate: no variant always first
                headers = variants[name][1]
                conn = conns[name]
                started = time.perf_counter()
                for _ in range(per_round):
                    conn.request("GET", path, headers=headers)
                    resp = conn.getresponse()
                    resp.read()
                    assert resp.status == 200, (name, resp.status)
                times[name].append((time.perf_counter() - started) * 1000 / per_round)
        print(f"GET {path} (per request, {per_round} per round, {rounds} rounds)")
        for name in variants:
            summary(name, times[name], None if name == "no access control" else times["no access control"])
    for conn in conns.values():
        conn.close()
    for srv in servers.values():
        srv.shutdown()
        srv.server_close()


def archive_rounds(traces: list[list[SpanRecord]], rounds: int, work: Path) -> None:
    key = base64.b64decode(AR.generate_key())
    docs = [(to_otlp_json(t), len(t)) for t in traces]
    spans = sum(n for _, n in docs)
    variants: dict[str, bytes | None] = {"plain + chained manifest": None, "AES-GCM + signed manifest": key}
    write: dict[str, list[float]] = {v: [] for v in variants}
    check: dict[str, list[float]] = {v: [] for v in variants}
    size: dict[str, int] = {}

    def timed(fn: Callable[[], object]) -> float:
        started = time.perf_counter()
        fn()
        return (time.perf_counter() - started) * 1000

    for r in range(rounds):
        for name, k in (list(variants.items()) if r % 2 == 0 else list(variants.items())[::-1]):
            directory = work / f"{r}-{len(size)}-{name[:5]}"
            write[name].append(timed(lambda d=directory, k=k: AR.write_archive(d, docs, k)))  # type: ignore[misc]
            check[name].append(timed(lambda d=directory, k=k: AR.verify(d, k)))  # type: ignore[misc]
            size[name] = sum(p.stat().st_size for p in directory.glob("pruned-*"))
            shutil.rmtree(directory)
    ref = "plain + chained manifest"
    print(f"archive of {len(docs)} traces, {spans} spans ({rounds} paired rounds)")
    for name in variants:
        summary(f"write, {name}", write[name], None if name == ref else write[ref])
    for name in variants:
        summary(f"verify, {name}", check[name], None if name == ref else check[ref])
    for name in variants:
        print(f"  size, {name:<28} {size[name] / 1024:8.1f} KiB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--traces", type=int, default=400)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = SpanStore(Path(tmp) / "traces.db")
        traces = seed(store, args.traces)
        viewer_rounds(store, args.rounds, args.requests, traces[0][0].trace_id)
        archive_rounds(traces, args.rounds, Path(tmp))
        store.close()


if __name__ == "__main__":
    main()
