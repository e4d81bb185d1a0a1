"""Store faults: a full disk, an unwritable file, a long lock, a corrupted file never touch a task,
log a clear warning, and every span is written once the condition ends — no partial or corrupted rows."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from harness import FaultRow

N = 400

# Runs in a child process: RLIMIT_FSIZE applies to the whole process, the test runner must not share it.
CHILD = textwrap.dedent(r'''
    import json, logging, resource, signal, sys, time
    sys.path.insert(0, sys.argv[2])
    from harness import run_tasks, added_latency
    import pipetrace

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    home, mode = sys.argv[1], sys.argv[3]
    pipetrace.configure(home=home, exporters="store", export_interval_s=0.05)
    baseline = run_tasks(200, "baseline")
    assert pipetrace.force_flush(10)
    if mode == "disk-full":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        import os
        limit = max(os.path.getsize(home + "/traces.db"), os.path.getsize(home + "/traces.db-wal")) + 4096
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    faulted = run_tasks(N_TASKS, "faulted")
    time.sleep(1.5)  # the condition lasts a while; writes fail and are retried meanwhile
    stats_during = dict(pipetrace.stats()["store"])
    if mode == "disk-full":
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space comes back
    ok = pipetrace.force_flush(30)
    added = added_latency(baseline, faulted)
    print(json.dumps({"flushed": ok, "p95": added.p95_ms, "max": added.max_ms, "during": stats_during,
                      "after": pipetrace.stats()["store"]}))
    pipetrace.shutdown(5)
''').replace("N_TASKS", str(N))


def _child(home: Path, mode: str) -> tuple[dict, str]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(home), str(Path(__file__).parent), mode],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def _faulted_rows(home: Path) -> int:
    conn = sqlite3.connect(home / "traces.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return int(conn.execute("SELECT COUNT(*) FROM spans WHERE run_id='faulted'").fetchone()[0])
    finally:
        conn.close()


def test_disk_full_then_space_returns(tmp_path: Path, report) -> None:
    result, stderr = _child(tmp_path, "disk-full")
    assert result["during"]["exported"] < 200 + N, "the fault must really have stopped writes"
    assert "database or disk is full" in stderr or "disk" in stderr.lower()
    assert result["flushed"]
    stored = _faulted_rows(tmp_path)
    report.append(FaultRow("store: disk full (RLIMIT_FSIZE), then space", N, N, stored, result["p95"], result["max"]))
    assert stored == N
    assert result["p95"] < 5


def _unwritable_then_fixed(tmp_path: Path) -> tuple[dict, str]:
    """traces.db replaced by a directory (root ignores chmod) while tasks run; removed a moment later."""
    marker = "\nfaulted = run_tasks("
    assert CHILD.count(marker) == 1
    script = CHILD.replace(marker, "\n" + textwrap.dedent('''\
        import os, threading
        pipetrace.shutdown(5)
        os.replace(home + "/traces.db", home + "/good.db")
        for suffix in ("-wal", "-shm"):
            if os.path.exists(home + "/traces.db" + suffix):
                os.remove(home + "/traces.db" + suffix)
        os.mkdir(home + "/traces.db")
        pipetrace.configure(home=home, exporters="store", export_interval_s=0.05)
        def fix():
            time.sleep(1.0)
            os.rmdir(home + "/traces.db")
            os.replace(home + "/good.db", home + "/traces.db")
        threading.Thread(target=fix).start()
        ''') + "faulted = run_tasks(")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path), str(Path(__file__).parent), "unwritable"],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def test_store_file_not_writable_then_fixed(tmp_path: Path, report) -> None:
    result, stderr = _unwritable_then_fixed(tmp_path)
    assert "cannot write spans" in stderr or "unable to open" in stderr
    assert result["flushed"]
    stored = _faulted_rows(tmp_path)
    report.append(FaultRow("store: file not writable, then fixed", N, N, stored, result["p95"], result["max"]))
    assert stored == N
    assert result["p95"] < 5


def test_database_locked_by_another_process_for_seconds(traced, report) -> None:
    import pipetrace
    from harness import added_latency, run_tasks

    baseline = run_tasks(200, "baseline")
    traced.flush()
    locker = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f'''
        import sqlite3, sys, time
        c = sqlite3.connect({str(traced.home / "traces.db")!r}, isolation_level=None)
        c.execute("BEGIN EXCLUSIVE")
        print("locked", flush=True)
        time.sleep(4)
        c.execute("COMMIT")
    ''')], stdout=subprocess.PIPE, text=True)
    assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
    start = time.monotonic()
    faulted = run_tasks(N, "faulted")
    assert time.monotonic() - start < 2, "tasks must not wait for the lock"
    assert locker.wait(30) == 0
    traced.flush()
    added = added_latency(baseline, faulted)
    stored = len(traced.store.trace(f"{pipetrace.run_identity('python', 'reliability', 'faulted').trace_id:032x}"))
    report.append(FaultRow("store: locked by another process for 4 s", N, N, stored, added.p95_ms, added.max_ms))
    assert stored == N
    assert added.p95_ms < 5


def test_corrupted_store_file_is_moved_aside(tmp_path: Path, report, caplog: pytest.LogCaptureFixture) -> None:
    import pipetrace
    from harness import added_latency, run_tasks

    (tmp_path / "traces.db").write_bytes(b"this is not a database\x00" * 4096)
    pipetrace.configure(home=tmp_path, exporters="store", export_interval_s=0.05)
    try:
        baseline = run_tasks(50, "baseline")
        faulted = run_tasks(N, "faulted")
        assert pipetrace.force_flush(10)
        added = added_latency(baseline, faulted)
        stored = _faulted_rows(tmp_path)
        report.append(FaultRow("store: corrupted file", N, N, stored, added.p95_ms, added.max_ms))
        assert stored == N
        assert "is corrupted" in caplog.text
        kept = list(tmp_path.glob("traces.db.corrupt-*"))
        assert kept and kept[0].read_bytes().startswith(b"this is not a database")
    finally:
        pipetrace.shutdown(5)
