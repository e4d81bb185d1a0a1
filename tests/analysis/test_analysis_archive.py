"""Encrypted, tamper-evident archives: an intact archive round-trips every span; one flipped byte, a
removed, added or reordered file, an edited manifest or the wrong key is named by verify and refused by
restore."""

from __future__ import annotations

import base64
import gzip
import json
import os
import time
from pathlib import Path

import pytest
from analysis_helpers import S, run, span, tid
from pipetrace.analysis import RetentionPolicy, prune
from pipetrace.analysis import archive as AR
from pipetrace.cli import app
from pipetrace.store import SpanRecord, SpanStore
from test_analysis_retention import remaining, seeded
from typer.testing import CliRunner

DAY = 86400


def rich_trace(now: int) -> list[SpanRecord]:
    """An expired run whose spans use every field an archive must carry back."""
    t, t0 = tid(777), now - 400 * DAY * S
    root = run(t, 0, 9, result="failure", run_id="rich", t0=t0)
    task = span(t, "a", "1", "task load", 1, 8, status="ERROR", t0=t0, run_id="rich",
                attrs={"rows": 12, "ratio": 0.25, "ok": False, "tags": ["x", "y"], "big": 2**62})
    task.status_message = "ValueError: bad row"
    task.events = [{"name": "exception", "time_ns": t0 + 2 * S,
                    "attributes": {"exception.type": "ValueError", "exception.message": "bad row"}}]
    task.links = [{"trace_id": tid(5), "span_id": "00000000000000bb", "attributes": {"pipetrace.link.kind": "xcom"}}]
    task.resource = {"service.name": "etl-worker", "host.name": "w1", "process.pid": 42}
    task.scope = "pipetrace"
    return [root, task]


def spans_of(path: Path, trace_ids: set[str]) -> list[dict[str, object]]:
    store = SpanStore(path)
    try:
        out = [s.to_json() for t in sorted(trace_ids) for s in store.trace(t)]
    finally:
        store.close()
    return sorted(out, key=lambda s: (s["trace_id"], s["span_id"]))  # type: ignore[return-value]


@pytest.fixture()
def archived(tmp_path: Path) -> tuple[Path, bytes]:
    """(archive dir, key) after two keyed prunes of a seeded store: two files in one chain."""
    now = time.time_ns()
    store = SpanStore(tmp_path / "traces.db")
    seeded(store.path, now)
    store.write(rich_trace(now))
    key = base64.b64decode(AR.generate_key())
    for policy, at in ((RetentionPolicy(), now), (RetentionPolicy(0, 0, 0), now + 10**12)):
        assert prune(store, policy, now_ns=at, archive_dir=tmp_path / "arch", archive_key=key).archive
    store.close()
    return tmp_path / "arch", key


def test_intact_archive_verifies_and_restores_every_span_equal(tmp_path: Path) -> None:
    now = time.time_ns()
    db = tmp_path / "traces.db"
    seeded(db, now)
    store = SpanStore(db)
    store.write(rich_trace(now))
    doomed = set(remaining(db)) - {tid(900)}  # all but the run in progress
    expected = spans_of(db, doomed)
    key = base64.b64decode(AR.generate_key())
    prune(store, RetentionPolicy(), now_ns=now, archive_dir=tmp_path / "arch", archive_key=key)
    prune(store, RetentionPolicy(0, 0, 0), now_ns=now + 10**12, archive_dir=tmp_path / "arch", archive_key=key)
    store.close()
    assert remaining(db) == {tid(900)}
    files = sorted((tmp_path / "arch").glob("pruned-*.enc"))
    assert len(files) == 2
    for f in files:  # encrypted: neither gzip nor any span name is visible
        data = f.read_bytes()
        assert data.startswith(AR.MAGIC) and b"task load" not in data and b"\x1f\x8b" not in data[:16]
    report = AR.verify(tmp_path / "arch", key)
    assert report.ok and report.authenticated and report.to_json()["traces"] == len(doomed)
    restored_db = tmp_path / "restored.db"
    target = SpanStore(restored_db)
    done = AR.restore(tmp_path / "arch", key, target)
    target.close()
    assert done.traces == len(doomed) and done.spans == len(expected)
    assert spans_of(restored_db, doomed) == expected


def test_one_flipped_byte_is_named_and_restore_refuses(archived: tuple[Path, bytes], tmp_path: Path) -> None:
    arch, key = archived
    manifest = json.loads((arch / AR.MANIFEST).read_text())
    victim = arch / manifest["entries"][0]["file"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    report = AR.verify(arch, key)
    assert [f.file for f in report.findings] == [victim.name]
    assert "SHA-256" in report.findings[0].problem
    target = SpanStore(tmp_path / "restored.db")
    with pytest.raises(AR.ArchiveError, match=victim.name):
        AR.restore(arch, key, target)
    assert target.count() == 0  # nothing written, not even the intact file
    target.close()


@pytest.mark.parametrize("attack", ["edit-manifest", "drop-entry", "remove-file", "extra-file", "wrong-key",
                                    "no-key", "swap-files"])
def test_every_other_tampering_is_named(archived: tuple[Path, bytes], attack: str) -> None:
    arch, key = archived
    given: bytes | None = key
    path = arch / AR.MANIFEST
    doc = json.loads(path.read_text())
    names = [e["file"] for e in doc["entries"]]
    expect = AR.MANIFEST
    if attack == "edit-manifest":
        doc["entries"][0]["traces"] += 1
        path.write_text(json.dumps(doc))
    elif attack == "drop-entry":  # a consistent-looking manifest, re-chained, but the MAC gives it away
        doc["entries"] = doc["entries"][1:]
        doc["entries"][0]["prev"] = AR.GENESIS
        doc["entries"][0]["hash"] = AR._entry_hash(doc["entries"][0])  # noqa: SLF001
        path.write_text(json.dumps(doc))
    elif attack == "remove-file":
        (arch / names[1]).unlink()
        expect = names[1]
    elif attack == "extra-file":
        (arch / "pruned-20990101T000000-abcdef.otlp.jsonl.gz").write_bytes(b"planted")
        expect = "pruned-20990101T000000-abcdef.otlp.jsonl.gz"
    elif attack == "wrong-key":
        given = base64.b64decode(AR.generate_key())
    elif attack == "no-key":
        given = None
    elif attack == "swap-files":
        a, b = (arch / n for n in names)
        da, db = a.read_bytes(), b.read_bytes()
        a.write_bytes(db)
        b.write_bytes(da)
        expect = names[0]
    report = AR.verify(arch, given)
    assert not report.ok and report.findings[0].file == expect, report.findings


def test_segments_cannot_be_reordered_truncated_or_moved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Below the manifest: the AES-GCM stream itself refuses reordered, dropped or renamed segments."""
    monkeypatch.setattr(AR, "SEGMENT", 64)
    key = base64.b64decode(AR.generate_key())
    docs = [({"resourceSpans": [], "n": i, "pad": os.urandom(40).hex()}, 0) for i in range(20)]
    path = AR.write_archive(tmp_path / "a", docs, key)
    assert [d["n"] for d in AR.read_lines(path, key)] == list(range(20))
    raw = path.read_bytes()
    head, body = raw[:len(AR.MAGIC) + AR.PREFIX_BYTES], raw[len(AR.MAGIC) + AR.PREFIX_BYTES:]
    segments = []
    while body:
        n = int.from_bytes(body[:4], "big")
        segments.append(body[:4 + n])
        body = body[4 + n:]
    assert len(segments) > 3
    variants = {"reordered": head + segments[1] + segments[0] + b"".join(segments[2:]),
                "truncated": head + b"".join(segments[:-1]), "renamed": raw}
    for label, data in variants.items():
        target = tmp_path / ("renamed.enc" if label == "renamed" else path.name)
        target.write_bytes(data)
        with pytest.raises(AR.ArchiveError, match="authentication|truncated"):
            list(AR.read_lines(target, key))


def test_plain_archive_without_a_key_keeps_a_chain(tmp_path: Path) -> None:
    docs = [({"resourceSpans": [], "n": 1}, 3)]
    path = AR.write_archive(tmp_path / "a", docs, None)
    with gzip.open(path, "rt") as fh:  # still readable with zcat
        assert json.loads(fh.readline())["n"] == 1
    report = AR.verify(tmp_path / "a", None)
    assert report.ok and not report.authenticated
    manifest = tmp_path / "a" / AR.MANIFEST
    good = manifest.read_text()
    doc = json.loads(good)
    del doc["entries"][0]["bytes"]
    manifest.write_text(json.dumps(doc))
    assert [str(f) for f in AR.verify(tmp_path / "a", None).findings] == ["manifest.json: entry 1 is malformed"]
    manifest.write_text("{not json")
    assert AR.verify(tmp_path / "a", None).findings[0].file == AR.MANIFEST
    manifest.write_text(good)
    with pytest.raises(AR.ArchiveError, match="written without a key"):
        AR.write_archive(tmp_path / "a", docs, base64.b64decode(AR.generate_key()))


def test_cli_keygen_prune_verify_restore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time_ns()
    home = tmp_path / "home"
    seeded(home / "traces.db", now)
    monkeypatch.setenv("PIPETRACE_HOME", str(home))
    monkeypatch.delenv(AR.KEY_ENV, raising=False)
    runner = CliRunner()
    keyfile = tmp_path / "archive.key"
    assert runner.invoke(app, ["archive", "keygen", "-o", str(keyfile)]).exit_code == 0
    assert keyfile.stat().st_mode & 0o777 == 0o600
    assert runner.invoke(app, ["archive", "keygen", "-o", str(keyfile)]).exit_code == 1  # never overwritten
    arch = tmp_path / "arch"
    refused = runner.invoke(app, ["prune", "--archive", str(arch), "--encrypt"])
    assert refused.exit_code == 2 and "no key" in refused.output
    pruned = runner.invoke(app, ["prune", "--archive", str(arch), "--key-file", str(keyfile), "--json"])
    assert pruned.exit_code == 0, pruned.output
    assert json.loads(pruned.stdout)["archive"].endswith(".enc")
    ok = runner.invoke(app, ["archive", "verify", str(arch), "--key-file", str(keyfile)])
    assert ok.exit_code == 0 and "signed manifest" in ok.stdout
    victim = next(arch.glob("pruned-*.enc"))
    data = bytearray(victim.read_bytes())
    data[-20] ^= 0x80
    victim.write_bytes(bytes(data))
    bad = runner.invoke(app, ["archive", "verify", str(arch), "--key-file", str(keyfile)])
    assert bad.exit_code == 1 and f"FAILED {victim.name}: modified" in bad.stdout
    no = runner.invoke(app, ["archive", "restore", str(arch), "--key-file", str(keyfile)])
    assert no.exit_code == 1 and victim.name in no.output and "refusing to restore" in no.output
    data[-20] ^= 0x80
    victim.write_bytes(bytes(data))
    monkeypatch.setenv(AR.KEY_ENV, keyfile.read_text().strip())  # the key from the environment works too
    back = runner.invoke(app, ["archive", "restore", str(arch)])
    assert back.exit_code == 0 and "restored 15 spans in 5 traces" in back.stdout
    monkeypatch.setenv(AR.KEY_ENV, "not-a-key")
    assert runner.invoke(app, ["archive", "verify", str(arch)]).exit_code == 2


def test_concurrent_writers_all_land_in_the_manifest(tmp_path: Path) -> None:
    """A CLI prune and a background one archiving into one directory at once: no entry is lost."""
    import threading

    key = base64.b64decode(AR.generate_key())
    docs = [({"resourceSpans": [], "pad": os.urandom(2000).hex()}, 1) for _ in range(50)]
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            AR.write_archive(tmp_path / "a", docs, key)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = AR.verify(tmp_path / "a", key)
    assert report.ok, report.findings
    assert len(report.entries) == 4 and len(list((tmp_path / "a").glob("pruned-*"))) == 4
