"""The viewer's one HTML page: served with linked assets, or as a self-contained report file.

The report inlines the same CSS and scripts and embeds the data, under a Content-Security-Policy that
forbids every network request, so it works from ``file://`` on a machine with no network.
"""

from __future__ import annotations

import html
import json
import re
from importlib import resources
from typing import Any

SCRIPTS = ("util.js", "waterfall.js", "flame.js", "history.js", "runs.js", "run.js", "app.js")
STYLES = ("pipetrace.css",)

REPORT_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
              "img-src data: blob:; connect-src 'none'; form-action 'none'; base-uri 'none'")
SERVER_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
              "connect-src 'self'; form-action 'none'; base-uri 'none'")
SERVER_CSP_HEADER = SERVER_CSP + "; frame-ancestors 'none'"  # only honoured as a header, not in <meta>


def asset(name: str) -> bytes:
    """A file under ``pipetrace/ui/static``."""
    return (resources.files("pipetrace.ui") / "static" / name).read_bytes()


def _template() -> str:
    return (resources.files("pipetrace.ui") / "templates" / "index.html").read_text("utf-8")


def embed_json(value: Any) -> str:
    """JSON safe inside a <script> element: no ``</script>``, ``<!--`` or U+2028 can end it early."""
    text = json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


_PLACEHOLDER = re.compile(r"\{\{(CSP|TITLE|HEAD|BOOT|SCRIPTS)\}\}")


def _fill(title: str, csp: str, head: str, scripts: str, boot: dict[str, Any]) -> str:
    """The template with each placeholder replaced in ONE pass over the template only.

    Sequential ``str.replace`` would also replace a placeholder that a previous value brought in (an
    attribute holding ``{{SCRIPTS}}`` in the embedded data), breaking the page; here inserted text is
    never scanned again.
    """
    values = {"CSP": html.escape(csp, quote=True), "TITLE": html.escape(title), "HEAD": head,
              "BOOT": embed_json(boot), "SCRIPTS": scripts}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], _template())


def server_page(version: str) -> str:
    head = "\n".join(f'<link rel="stylesheet" href="/static/{n}?v={version}">' for n in STYLES)
    scripts = "\n".join(f'<script src="/static/{n}?v={version}"></script>' for n in SCRIPTS)
    return _fill("pipetrace", SERVER_CSP, head, scripts, {"mode": "server", "version": version})


def _inline_script(name: str) -> str:
    text = re.sub(r"</(script)", r"<\\/\1", asset(name).decode("utf-8"), flags=re.IGNORECASE)
    return f"<script>/* {name} */\n{text}\n</script>"


def report_page(doc: dict[str, Any], exports: dict[str, Any], version: str) -> str:
    """One run page with its data (trace, task histories, OTLP and Jaeger JSON) embedded."""
    head = "\n".join(f"<style>/* {n} */\n{asset(n).decode('utf-8')}\n</style>" for n in STYLES)
    scripts = "\n".join(_inline_script(n) for n in SCRIPTS)
    run = doc.get("run") or {}
    title = f"pipetrace · {run.get('pipeline') or 'trace'} {run.get('run_id') or doc.get('trace_id', '')}"
    boot = {"mode": "report", "version": version, "trace": doc, "exports": exports}
    return _fill(title, REPORT_CSP, head, scripts, boot)
