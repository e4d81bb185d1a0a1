"""Encrypted, tamper-evident archives of pruned traces: what ``pipetrace prune --archive`` writes.

A directory holds archive files (gzip of OTLP JSON lines, one ``ExportTraceServiceRequest`` per trace) and
one ``manifest.json``: an entry per file with its size and SHA-256, each entry hashed together with the
previous entry's hash (a chain: an entry cannot be removed, reordered or edited without breaking every
later one), and — when a key is given — an HMAC-SHA256 over the whole manifest, so nobody without the key
can rewrite it consistently.

With a key (32 bytes: ``--key-file`` or ``PIPETRACE_ARCHIVE_KEY``, base64), each file is also encrypted
with AES-256-GCM in 1 MiB segments (the STREAM construction: nonce = random prefix + segment counter +
last-segment flag, the file name as associated data), so a segment cannot be altered, reordered, dropped
or moved to another file unnoticed. Separate keys for encryption and the manifest are derived from the
one key by HMAC. Without a key the files are plain gzip and the chain only detects accidental damage.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import hmac
import io
import json
import os
import secrets
import struct
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "pipetrace-archive/1"
MANIFEST = "manifest.json"
KEY_ENV = "PIPETRACE_ARCHIVE_KEY"
MAGIC = b"PTARC1\n"
PREFIX_BYTES = 7
SEGMENT = 1 << 20
TAG = 16
GENESIS = "0" * 64


class ArchiveError(Exception):
    """An archive that cannot be written, read or trusted; the message names the file."""


# ---- keys --------------------------------------------------------------------------------------------

def generate_key() -> str:
    """A new key, base64 (what ``pipetrace archive keygen`` writes)."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def decode_key(text: str, source: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ArchiveError(f"{source}: not base64 (make a key with: pipetrace archive keygen)") from None
    if len(key) != 32:
        raise ArchiveError(f"{source}: the key must be 32 bytes, base64-encoded (got {len(key)} bytes)")
    return key


def load_key(key_file: Path | None = None, env: dict[str, str] | None = None) -> bytes | None:
    """The archive key from ``key_file`` or ``$PIPETRACE_ARCHIVE_KEY``; None when neither is set."""
    if key_file is not None:
        try:
            return decode_key(key_file.read_text("utf-8"), str(key_file))
        except OSError as exc:
            raise ArchiveError(f"{key_file}: cannot read the key: {exc.strerror or exc}") from None
    value = (os.environ if env is None else env).get(KEY_ENV)
    return decode_key(value, KEY_ENV) if value else None


def _subkey(key: bytes, purpose: str) -> bytes:
    return hmac.new(key, f"{FORMAT} {purpose}".encode(), hashlib.sha256).digest()


def key_id(key: bytes) -> str:
    """Names the key in the manifest (not secret: an HMAC of a constant), so a wrong key is reported as such."""
    return _subkey(key, "key-id")[:8].hex()


def _aesgcm(key: bytes) -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        raise ArchiveError("encrypted archives need the 'cryptography' package: "
                           "pip install 'pipetrace[archive]'") from None
    return AESGCM(_subkey(key, "encrypt"))


# ---- encrypted file streams -------------------------------------------------------------------------

class _EncryptingWriter:
    """File-like sink for gzip: buffers, then writes AES-GCM segments to ``fh``."""

    def __init__(self, fh: Any, key: bytes, name: str) -> None:
        self.fh, self.aead, self.buf, self.counter = fh, _aesgcm(key), bytearray(), 0
        self.prefix = secrets.token_bytes(PREFIX_BYTES)
        self.header = MAGIC + self.prefix
        self.aad = self.header + name.encode()
        fh.write(self.header)

    def _seal(self, chunk: bytes, last: bool) -> None:
        nonce = self.prefix + struct.pack(">IB", self.counter, 1 if last else 0)
        sealed = self.aead.encrypt(nonce, chunk, self.aad)
        self.fh.write(struct.pack(">I", len(sealed)) + sealed)
        self.counter += 1

    def write(self, data: bytes) -> int:
        self.buf += data
        while len(self.buf) > SEGMENT:  # keep at least one byte back: the last segment is sealed as last
            self._seal(bytes(self.buf[:SEGMENT]), False)
            del self.buf[:SEGMENT]
        return len(data)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self._seal(bytes(self.buf), True)
        self.buf.clear()


def _decrypted_segments(fh: Any, key: bytes, name: str) -> Iterator[bytes]:
    header = fh.read(len(MAGIC) + PREFIX_BYTES)
    if len(header) != len(MAGIC) + PREFIX_BYTES or not header.startswith(MAGIC):
        raise ArchiveError(f"{name}: not an encrypted pipetrace archive file")
    aead, prefix, aad = _aesgcm(key), header[len(MAGIC):], header + name.encode()
    counter = 0
    while True:
        size = fh.read(4)
        if len(size) != 4:
            raise ArchiveError(f"{name}: truncated (no final segment)")
        (length,) = struct.unpack(">I", size)
        if not TAG <= length <= SEGMENT + TAG:
            raise ArchiveError(f"{name}: corrupt segment length")
        sealed = fh.read(length)
        for last in (0, 1):
            try:
                plain = aead.decrypt(prefix + struct.pack(">IB", counter, last), sealed, aad)
                break
            except Exception:  # InvalidTag: wrong key, modified bytes, or not this position
                plain = None
        if plain is None:
            raise ArchiveError(f"{name}: segment {counter} fails authentication (modified, or another key)")
        yield plain
        counter += 1
        if last:
            if fh.read(1):
                raise ArchiveError(f"{name}: data after the final segment")
            return


class _SegmentReader(io.RawIOBase):
    def __init__(self, segments: Iterator[bytes]) -> None:
        self.segments, self.pending = segments, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            nxt = next(self.segments, None)
            if nxt is None:
                return 0
            self.pending = nxt
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def read_lines(path: Path, key: bytes | None) -> Iterator[dict[str, Any]]:
    """The OTLP JSON documents of one archive file, decrypted when it is encrypted."""
    with open(path, "rb") as fh:
        encrypted = fh.read(len(MAGIC)) == MAGIC
        fh.seek(0)
        if encrypted:
            if key is None:
                raise ArchiveError(f"{path.name}: encrypted: a key is needed (--key-file or {KEY_ENV})")
            raw: Any = io.BufferedReader(_SegmentReader(_decrypted_segments(fh, key, path.name)))
        else:
            raw = fh
        try:
            with gzip.open(raw, "rt", encoding="utf-8") as text:
                for line in text:
                    if line.strip():
                        yield json.loads(line)
        except (OSError, EOFError, ValueError) as exc:
            raise ArchiveError(f"{path.name}: unreadable: {exc}") from None


# ---- the manifest ------------------------------------------------------------------------------------

def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(entry["prev"].encode() + _canonical(body)).hexdigest()


def _mac(doc: dict[str, Any], key: bytes) -> str:
    body = {k: v for k, v in doc.items() if k != "mac"}
    return hmac.new(_subkey(key, "manifest"), _canonical(body), hashlib.sha256).hexdigest()


@dataclass
class Finding:
    file: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}: {self.problem}"


@dataclass
class VerifyReport:
    directory: Path
    entries: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    authenticated: bool = False

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "ok": self.ok, "authenticated": self.authenticated,
                "files": len(self.entries), "traces": sum(e["traces"] for e in self.entries),
                "spans": sum(e["spans"] for e in self.entries),
                "problems": [{"file": f.file, "problem": f.problem} for f in self.findings]}


def _read_manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / MANIFEST
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ArchiveError(f"{MANIFEST}: unreadable: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("entries"), list):
        raise ArchiveError(f"{MANIFEST}: not a {FORMAT} manifest")
    return doc


_ENTRY_FIELDS = {"file": str, "bytes": int, "sha256": str, "traces": int, "spans": int, "prev": str, "hash": str}


def _check_manifest(doc: dict[str, Any], key: bytes | None, report: VerifyReport) -> None:
    sealed_with = doc.get("key_id")
    if sealed_with:
        if key is None:
            report.findings.append(Finding(MANIFEST, f"sealed with a key: pass --key-file or set {KEY_ENV}"))
            return
        if key_id(key) != sealed_with:
            report.findings.append(Finding(MANIFEST, "sealed with another key (key id differs)"))
            return
        if not hmac.compare_digest(str(doc.get("mac") or ""), _mac(doc, key)):
            report.findings.append(Finding(MANIFEST, "modified: its MAC does not match"))
            return
        report.authenticated = True
    prev = GENESIS
    for i, entry in enumerate(doc["entries"]):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), t) for k, t in _ENTRY_FIELDS.items()):
            report.findings.append(Finding(MANIFEST, f"entry {i + 1} is malformed"))
            return
        if entry.get("prev") != prev or entry.get("hash") != _entry_hash(entry):
            name = entry.get("file", f"entry {i + 1}") if isinstance(entry, dict) else f"entry {i + 1}"
            report.findings.append(Finding(MANIFEST, f"hash chain broken at entry {i + 1} ({name})"))
            return
        prev = entry["hash"]
    report.entries = list(doc["entries"])


def _sha256(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def verify(directory: Path, key: bytes | None) -> VerifyReport:
    """Every problem found, each naming the file: the manifest, a modified/missing/unlisted archive file."""
    report = VerifyReport(directory)
    try:
        doc = _read_manifest(directory)
    except ArchiveError as exc:
        report.findings.append(Finding(MANIFEST, str(exc).split(": ", 1)[1]))
        return report
    if doc is None:
        report.findings.append(Finding(MANIFEST, "missing: not a tamper-evident archive directory"))
        return report
    _check_manifest(doc, key, report)
    if report.findings:
        return report
    listed = set()
    for entry in report.entries:
        name = str(entry["file"])
        listed.add(name)
        path = directory / name
        if os.path.basename(name) != name or not path.is_file():
            report.findings.append(Finding(name, "missing"))
            continue
        digest, size = _sha256(path)
        if size != entry["bytes"] or not hmac.compare_digest(digest, entry["sha256"]):
            report.findings.append(Finding(name, "modified: its SHA-256 differs from the manifest"))
            continue
        try:
            count = sum(1 for _ in read_lines(path, key))
        except ArchiveError as exc:
            report.findings.append(Finding(name, str(exc).split(": ", 1)[1]))
            continue
        if count != entry["traces"]:
            report.findings.append(Finding(name, f"holds {count} traces, the manifest says {entry['traces']}"))
    for path in sorted(directory.glob("pruned-*")):
        if path.name not in listed and not path.name.endswith(".tmp"):
            report.findings.append(Finding(path.name, "not listed in the manifest"))
    return report


# ---- writing -----------------------------------------------------------------------------------------

class _Hashing:
    def __init__(self, fh: Any) -> None:
        self.fh, self.digest, self.size = fh, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return int(self.fh.write(data))

    def flush(self) -> None:
        self.fh.flush()


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One writer per archive directory at a time (a CLI prune and a background one could race on the
    manifest, and the loser's file would be left out of it)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a") as fh:
        try:
            import fcntl
        except ImportError:  # not POSIX: no cross-process lock
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_archive(directory: Path, documents: Iterable[tuple[dict[str, Any], int]], key: bytes | None) -> Path:
    """Write ``(OTLP JSON document, span count)`` pairs as one new archive file and chain it into the
    manifest (sealed again with ``key``). Refuses a directory whose manifest does not verify, or that
    was sealed with another key (or none): extending it would re-seal whatever was altered."""
    with _locked(directory):
        return _write_archive(directory, documents, key)


def _write_archive(directory: Path, documents: Iterable[tuple[dict[str, Any], int]], key: bytes | None) -> Path:
    existing = _read_manifest(directory)
    doc = existing or {"format": FORMAT, "key_id": key_id(key) if key else None, "entries": []}
    if bool(doc.get("key_id")) != (key is not None):
        state = "sealed with a key: pass it" if doc.get("key_id") else "written without a key"
        raise ArchiveError(f"{directory}: {state}; use a new archive directory to change that")
    check = VerifyReport(directory)
    if existing is not None:
        _check_manifest(doc, key, check)
    if check.findings:
        raise ArchiveError(f"{directory}: refusing to extend an archive that does not verify: {check.findings[0]}")
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    name = f"pruned-{stamp}-{secrets.token_hex(3)}.otlp.jsonl.gz" + (".enc" if key else "")
    final, tmp = directory / name, directory / (name + ".tmp")
    traces = spans = 0
    with open(tmp, "wb") as raw:
        hashing = _Hashing(raw)
        sink: Any = _EncryptingWriter(hashing, key, name) if key else hashing
        with gzip.GzipFile(filename="", mode="wb", fileobj=sink, mtime=0) as gz:
            for document, count in documents:
                gz.write(json.dumps(document, separators=(",", ":")).encode() + b"\n")
                traces += 1
                spans += count
        if key:
            sink.close()
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, final)
    entry: dict[str, Any] = {"file": name, "bytes": hashing.size, "sha256": hashing.digest.hexdigest(),
                             "traces": traces, "spans": spans, "encrypted": key is not None,
                             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             "prev": doc["entries"][-1]["hash"] if doc["entries"] else GENESIS}
    entry["hash"] = _entry_hash(entry)
    doc["entries"].append(entry)
    if key:
        doc["mac"] = _mac(doc, key)
    tmp_manifest = directory / (MANIFEST + ".tmp")
    tmp_manifest.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp_manifest, directory / MANIFEST)
    return final


# ---- restoring ---------------------------------------------------------------------------------------

@dataclass
class RestoreReport:
    files: int = 0
    traces: int = 0
    spans: int = 0


def restore(directory: Path, key: bytes | None, store: Any) -> RestoreReport:
    """Verify the whole directory, then write every archived span back into ``store``. Nothing is written
    when any file fails verification."""
    from ..store.formats import from_otlp_json

    report = verify(directory, key)
    if not report.ok:
        raise ArchiveError("refusing to restore: " + "; ".join(str(f) for f in report.findings))
    out = RestoreReport()
    for entry in report.entries:
        out.files += 1
        for document in read_lines(directory / entry["file"], key):
            records = from_otlp_json(document)
            store.write(records)
            out.traces += 1
            out.spans += len(records)
    return out
