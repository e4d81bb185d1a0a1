"""``pipetrace doctor``: what this environment really does, as a list of checks.

Each check looks at one thing (the store, one exporter, the orchestrators) and returns findings: ✓ works,
✗ will not work (with the command that fixes it), or · information. Any ✗ makes doctor exit 1. Another
part of pipetrace adds its own line with :func:`register` (e.g. a store backend, viewer access).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urlparse

from ..config import Settings


@dataclass(frozen=True)
class Finding:
    ok: bool | None  # True ✓, False ✗, None information
    what: str
    detail: str = ""
    fix: str = ""  # the command or setting that turns a ✗ into a ✓

    def line(self) -> str:
        mark = {True: "✓", False: "✗", None: "·"}[self.ok]
        text = f"{mark} {self.what}" + (f": {self.detail}" if self.detail else "")
        return text + (f" — fix: {self.fix}" if self.fix else "")


Check = Callable[[Settings], Iterable[Finding]]
CHECKS: list[Check] = []


def register(check: Check) -> Check:
    """Add a check (usable as a decorator); checks run in the order they were registered."""
    CHECKS.append(check)
    return check


def run_checks(settings: Settings, checks: Iterable[Check] | None = None) -> list[Finding]:
    findings: list[Finding] = []
    for check in CHECKS if checks is None else checks:
        try:
            findings.extend(check(settings))
        except Exception as exc:  # a broken check is a finding, not a crash of doctor
            findings.append(Finding(False, getattr(check, "__name__", "check"), f"the check itself failed: {exc!r}"))
    return findings


@register
def tracing(settings: Settings) -> Iterable[Finding]:
    if settings.active:
        yield Finding(None, "tracing", f"on (service.name {settings.service_name!r} unless a component sets its own)")
    else:
        why = "PIPETRACE_ENABLED=false" if not settings.enabled else "OTEL_SDK_DISABLED=true"
        yield Finding(None, "tracing", f"off ({why}): no spans are made")


@register
def store(settings: Settings) -> Iterable[Finding]:
    from ..store.health import check as store_check

    if "store" not in settings.exporters:
        yield Finding(None, "store exporter", f"off (PIPETRACE_EXPORTERS={','.join(settings.exporters)})")
        return
    try:
        ok, detail = store_check(settings.store_path)  # backend, schema version, reachability, buffer
    except Exception as exc:
        ok, detail = False, f"{settings.store_path}: {exc}"
    fix = "" if ok else ("check PIPETRACE_STORE (server up, URL right)" if settings.store
                         else "set PIPETRACE_HOME to a folder you can write to")
    yield Finding(ok, "store exporter", detail, fix)
    if settings.store:
        yield from _buffer_drops(settings)


def _buffer_drops(settings: Settings) -> Iterable[Finding]:
    """Spans a PostgreSQL store lost because the local buffer was full (recorded by every process of the
    home): a ✗ for a day after the last drop, then information."""
    import time

    from ..store import SpanStore
    from ..store.buffer import drops_recorded

    path = SpanStore.local(settings.store_path).buffer_path
    dropped, last_ns = drops_recorded(path)
    if dropped:
        recent = time.time_ns() - last_ns < 86_400 * 10**9
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(last_ns / 1e9))
        yield Finding(False if recent else None, "store buffer",
                      f"{dropped} spans dropped while the store was unreachable and {path} was full or "
                      f"unwritable (last at {when})",
                      "raise PIPETRACE_STORE_BUFFER_MAX or free the disk it is on" if recent else "")


def reachable(endpoint: str, timeout: float = 2.0) -> tuple[bool, str]:
    parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
    host = parsed.hostname or "localhost"
    port = parsed.port or (443 if parsed.scheme == "https" else 4318)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, f"{host}:{port} accepts connections"
    except OSError as exc:
        return False, f"{host}:{port}: {exc}"


@register
def otlp(settings: Settings) -> Iterable[Finding]:
    from ..processing.export import OTLP_INSTALL, otlp_missing

    if "otlp" not in settings.exporters:
        if settings.otlp_endpoint:
            yield Finding(None, "OTLP exporter", f"off (PIPETRACE_EXPORTERS={','.join(settings.exporters)}) although "
                                                 f"an endpoint is set ({settings.otlp_endpoint})")
        else:
            yield Finding(None, "OTLP exporter", "not configured (set OTEL_EXPORTER_OTLP_ENDPOINT to export)")
        return
    missing = otlp_missing(settings.otlp_protocol)
    if missing:
        yield Finding(False, "OTLP exporter", f"{settings.otlp_protocol} exporter not installed: {missing}; "
                                              "traced processes export to the store only", OTLP_INSTALL)
    else:
        yield Finding(True, "OTLP exporter", f"{settings.otlp_protocol} exporter installed")
    ok, detail = reachable(settings.otlp_endpoint or "")
    yield Finding(ok, "OTLP endpoint", detail, "" if ok else "start the collector or fix OTEL_EXPORTER_OTLP_ENDPOINT")


@register
def console_exporter(settings: Settings) -> Iterable[Finding]:
    if "console" in settings.exporters:
        yield Finding(True, "console exporter", "on (spans printed to stdout)")


FIXES = {"queue_full": "raise PIPETRACE_MAX_QUEUE_SIZE or check that the exporter keeps up",
         "shutdown": "raise PIPETRACE_FLUSH_TIMEOUT or call pipetrace.force_flush() before the process exits",
         "exporter_error": "check the exporter's endpoint (the line above) and its log warnings"}


LOSSES_RECENT_S = 7 * 86_400
"""Journal entries (other processes' losses) newer than this are a ✗; older ones are not shown."""


@register
def lost_spans(settings: Settings) -> Iterable[Finding]:
    """Spans lost, by cause: this process's (``pipetrace.stats()["lost"]``, when doctor runs inside a traced
    program) and every traced process's of this home in the last week, from the loss journal
    (``$PIPETRACE_HOME/losses/``), since the ``pipetrace doctor`` command is a process of its own."""
    import time

    from ..util.losses import meaning, recorded, snapshot

    here = snapshot()
    for key, n in here.items():
        yield Finding(False, "lost spans", f"{n} {key} in this process: {meaning(key)}",
                      FIXES.get(key.split(".", 1)[0], ""))
    journal = recorded(settings.home, since_ns=time.time_ns() - int(LOSSES_RECENT_S * 1e9))
    for key, n in journal.lost.items():
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(journal.last_ns / 1e9))
        yield Finding(False, "lost spans", f"{n} {key} in {journal.processes} traced process(es) of "
                      f"{settings.home} (last {when}): {meaning(key)}", FIXES.get(key.split(".", 1)[0], ""))
    if not here and not journal.lost:
        yield Finding(None, "lost spans", f"none in the last 7 days (traced processes of {settings.home} "
                                          "journal theirs under losses/)")


# adapter name → (top-level module, distribution whose version is shown)
ORCHESTRATORS = {"airflow": ("airflow", "apache-airflow"), "celery": ("celery", "celery"),
                 "dagster": ("dagster", "dagster"), "kombu": ("kombu", "kombu"), "prefect": ("prefect", "prefect")}
_PROBE = """
import importlib, json, sys
try:
    module = importlib.import_module(sys.argv[1])
    if getattr(module, "__file__", None) is None:  # a bare folder of that name, not the package
        raise ImportError(f"{sys.argv[1]} resolves to a namespace folder {list(module.__path__)}")
    print(json.dumps(None))
except BaseException as exc:
    print(json.dumps(f"{type(exc).__name__}: {exc}"))
"""


def _importable(modules: Iterable[str], timeout_s: float = 90) -> dict[str, str | None]:
    """Import each module in a child process of its own, in parallel (an orchestrator's import has side
    effects — logging set-up, config files — that doctor's own process must not take on); module →
    None when it imports, else why not."""
    procs = {m: subprocess.Popen([sys.executable, "-c", _PROBE, m], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 stdin=subprocess.DEVNULL, text=True) for m in modules}
    out: dict[str, str | None] = {}
    for module, proc in procs.items():
        try:
            stdout, _ = proc.communicate(timeout=timeout_s)
            lines = stdout.strip().splitlines()
            out[module] = json.loads(lines[-1]) if lines else f"exited {proc.returncode}"
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            out[module] = f"import took longer than {timeout_s:.0f} s"
    return out


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


@register
def adapters(settings: Settings) -> Iterable[Finding]:
    """The orchestrators this environment can trace: those that really import, with their versions."""
    import importlib.util

    found = {name: mod for name, (mod, _) in ORCHESTRATORS.items() if importlib.util.find_spec(mod) is not None}
    results = _importable(found.values())
    working = [f"{name} {_version(ORCHESTRATORS[name][1])}" for name, mod in found.items() if results[mod] is None]
    absent = sorted(set(ORCHESTRATORS) - set(found))
    yield Finding(None, "adapters", ", ".join(working) or "none (install an extra, e.g. pip install \".[celery]\")")
    for name, mod in found.items():
        if results[mod] is not None:
            yield Finding(False, f"{name} adapter", f"{mod} is installed but does not import: {results[mod]}",
                          f'pip install --force-reinstall "pipetrace[{name}]"')
    if absent:
        yield Finding(None, "not installed", ", ".join(absent))
