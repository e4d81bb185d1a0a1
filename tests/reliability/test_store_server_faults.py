"""PostgreSQL store faults beyond "server stopped", on a private server started by the test (never the
shared one): a slow server (every process SIGSTOPped, or the span table locked by another session) and
a full data disk (the data directory on a small tmpfs, filled). Tasks are unaffected, spans wait locally
and all arrive once the server recovers; past the buffer bound, spans are dropped, counted in ``stats()``
and shown by ``doctor``.

One "host" (tests/fleet_worker.py ``fault``) runs 3 phases of N tasks; the fault lasts through phase 1."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_store import cli, count, faulted_run
from harness import FaultRow
from private_pg import PrivatePostgres

pytestmark = pytest.mark.slow

N = 300
PASSWORD = "s3cr3t-pw"


def _store(pg: PrivatePostgres) -> str:
    return pg.url.replace("postgres@", f"postgres:{PASSWORD}@") + "?schema=fault"  # trust auth ignores it


def _added(result: dict) -> tuple[float, float]:
    """(p95, max) added per task in phase 1 (the fault) over phase 0 (healthy), in ms."""
    (p50_0, _, _), (_, p95_1, max_1), _ = result["phase_ms"]
    return p95_1 - p50_0, max_1 - p50_0


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    try:
        pg.start()
        yield pg
    finally:
        _signal(_safe_pids(pg), signal.SIGCONT)  # never leave a frozen server behind
        pg.destroy()


def _signal(pids: list[int], sig: signal.Signals) -> None:
    """Signal each server process still there (a backend may exit between listing and signalling)."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _safe_pids(pg: PrivatePostgres) -> list[int]:
    try:
        return pg.pids()
    except (OSError, ValueError):
        return []


class Frozen:
    """The whole server stopped (postmaster and backends, mid-connection): a hung host, or a network
    that drops packets without a reset. Only the client can end a write that waits on it."""

    def __init__(self, pg: PrivatePostgres) -> None:
        self.pg, self.pids = pg, list[int]()

    def inject(self) -> None:
        self.pids = self.pg.pids()
        _signal(self.pids, signal.SIGSTOP)

    def recover(self) -> None:
        _signal(self.pids, signal.SIGCONT)


class Locked:
    """The server answers but every write waits: another session holds the span table's lock."""

    def __init__(self, pg: PrivatePostgres) -> None:
        self.pg, self.conn = pg, None

    def inject(self) -> None:
        import psycopg

        self.conn = psycopg.connect(self.pg.url, autocommit=True)
        deadline = time.monotonic() + 20
        while True:  # the first write of phase 0 creates the schema
            try:
                self.conn.execute("BEGIN")
                self.conn.execute("LOCK TABLE fault.spans IN ACCESS EXCLUSIVE MODE")
                return
            except psycopg.errors.UndefinedTable:
                self.conn.execute("ROLLBACK")
                assert time.monotonic() < deadline, "the store schema never appeared"
                time.sleep(0.2)

    def recover(self) -> None:
        assert self.conn is not None
        self.conn.execute("COMMIT")
        self.conn.close()


@pytest.mark.parametrize("fault", [Frozen, Locked], ids=["frozen", "locked"])
def test_slow_server_tasks_unaffected_spans_wait_locally_and_all_arrive(tmp_path: Path, private_pg, fault,
                                                                        report) -> None:
    slow = fault(private_pg)
    home = tmp_path / "home"
    # a write still waiting after 3 s has its connection cut (default 40 s: past the server's own timeout)
    result, err = faulted_run(_store(private_pg), home, N, slow.inject, slow.recover, hold_s=8,
                              PIPETRACE_STORE_WRITE_DEADLINE="3")
    stored = count(_store(private_pg), home)
    p95, worst = _added(result)
    report.append(FaultRow(f"postgresql store: server {fault.__name__.lower()} 8 s", 1, 3 * N + 1, stored, p95, worst))
    assert result["left"] == 0, (result, err[-3000:])
    assert stored == 3 * N + 1  # every span of every phase, once
    assert p95 < 5, result  # the per-task promise holds while the server hangs
    assert result["buffer"]["buffered"] > 0 and result["buffer"]["dropped"] == 0, result
    assert result["buffer"]["drained"] == result["buffer"]["buffered"], result
    assert PASSWORD not in err
    assert err.count("buffering them in") == 1, err[-3000:]


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 64 MiB tmpfs (we are root in the test rig); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = Path(tempfile.mkdtemp(prefix="pt-pg-disk-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", str(mount)], check=True)
    try:
        subprocess.run(["chown", "postgres:postgres", str(mount)], check=True)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


def _fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte with one file; deleting it frees the space."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 20, 4096, 512):
            block = b"\0" * chunk
            try:
                while os.write(fd, block):
                    pass
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


@pytest.mark.parametrize("bound", [100_000, N // 2], ids=["within-bound", "past-bound"])
def test_full_data_disk_tasks_unaffected_spans_buffered_then_drained(tmp_path: Path, small_disk: Path, bound: int,
                                                                     report) -> None:
    pg = PrivatePostgres(data=small_disk / "data")
    filler: list[Path] = []
    try:
        pg.start()
        home = tmp_path / "home"
        store = _store(pg)
        result, err = faulted_run(store, home, N, lambda: filler.append(_fill(small_disk)),
                                  lambda: filler[0].unlink(), hold_s=2, PIPETRACE_STORE_BUFFER_MAX=str(bound))
        stored = count(store, home)
        assert "No space left on device" in (pg.dir / "log").read_text()  # the server really ran out
        doctor = cli(home, store, "doctor")
    finally:
        pg.destroy()
    p95, worst = _added(result)
    buffer = result["buffer"]
    report.append(FaultRow(f"postgresql store: disk full, buffer {bound:,}", 1, 3 * N + 1, stored, p95, worst))
    assert result["left"] == 0, (result, err[-3000:])
    assert p95 < 5, result
    assert buffer["buffered"] > 0 and buffer["drained"] == buffer["buffered"], result
    assert stored + buffer["dropped"] == 3 * N + 1  # what did not arrive is exactly what was counted
    assert result["lost"].get("store_buffer_full", 0) == buffer["dropped"], result  # and in stats()["lost"]
    assert "No space left on device" in err or "could not extend" in err, err[-3000:]
    assert PASSWORD not in err + doctor.stdout + doctor.stderr
    if bound >= 3 * N:
        assert buffer["dropped"] == 0 and stored == 3 * N + 1  # within the bound nothing is lost
        assert "store buffer" not in doctor.stdout
    else:
        assert buffer["dropped"] >= N - bound, result  # the buffer held its bound, the rest was counted
        assert f"{buffer['dropped']} spans dropped" in doctor.stdout, doctor.stdout
        assert err.count("is full") == 1, err[-3000:]  # logged once


def test_doctor_shows_recorded_drops_from_any_process_without_the_password(tmp_path: Path) -> None:
    import sqlite3

    from pipetrace.store import SpanRecord, SpanStore
    from pipetrace.store.buffer import BufferedWriter, stats
    from pipetrace.store.postgres import PostgresBackend
    from pipetrace.store.sqlite import _row
    from pipetrace.store.target import parse

    down = f"postgresql://postgres:{PASSWORD}@127.0.0.1:9/postgres?schema=nowhere"
    home = tmp_path / "home"
    writer = BufferedWriter(SpanStore(home / "traces.db", backend=PostgresBackend(parse(down))), max_spans=10)
    t0 = time.time_ns()
    writer.write_rows([_row(SpanRecord("c" * 32, f"{n:016x}", None, "x", "INTERNAL", t0, t0)) for n in range(25)])
    assert (writer.buffered, writer.dropped) == (10, 15)
    assert stats()["dropped"] >= 15  # this process's counters (pipetrace.stats()["store_buffer"])

    shown = cli(home, down, "doctor")  # another process reads the count the writer recorded
    assert "✗ store buffer: 15 spans dropped" in shown.stdout, shown.stdout
    assert PASSWORD not in shown.stdout + shown.stderr
    with sqlite3.connect(home / "buffer.db") as conn:  # a day later it is history, not a failure
        conn.execute("UPDATE buffer_drops SET last_ns = last_ns - 2 * 86400 * 1000000000")
    assert "· store buffer: 15 spans dropped" in cli(home, down, "doctor").stdout
