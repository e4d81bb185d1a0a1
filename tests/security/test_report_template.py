"""The report's template is filled in one pass: placeholders inside the data are data, never template."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pipetrace
from pipetrace.store import SpanStore
from pipetrace.ui.page import SCRIPTS
from pipetrace.ui.report import build_report

PLACEHOLDERS = "{{SCRIPTS}} {{BOOT}} {{HEAD}} {{TITLE}} {{CSP}}"


def test_placeholders_in_span_data_do_not_break_the_report(traced: object) -> None:
    with pipetrace.task_span("python", "tmpl {{TITLE}}", "r-{{BOOT}}", "t {{SCRIPTS}}",
                             attributes={"template": PLACEHOLDERS}):
        pass
    pipetrace.run_span("python", "tmpl {{TITLE}}", "r-{{BOOT}}", start=0.0, end=1.0, result="success")
    assert pipetrace.force_flush(10)
    html = build_report(SpanStore(traced.home / "traces.db"), "r-{{BOOT}}")  # type: ignore[attr-defined]
    assert html is not None
    for name in SCRIPTS:  # every script inlined exactly once: nothing was spliced into the data
        assert html.count(f"<script>/* {name} */") == 1, name
    boot = re.search(r'<script type="application/json" id="pt-boot">(.*?)</script>', html, re.DOTALL)
    assert boot is not None
    doc = json.loads(boot.group(1))
    spans = doc["trace"]["spans"]
    assert len(spans) == 2
    task = next(s for s in spans if s["name"] == "task t {{SCRIPTS}}")
    assert task["attrs"]["template"] == PLACEHOLDERS
    assert "tmpl {{TITLE}}" in html.split("<title>", 1)[1].split("</title>", 1)[0]


def test_report_size_per_span(tmp_path: Path) -> None:
    """docs/viewer.md states the report's size per span: keep the figure true (see the command there)."""
    from pipetrace.ui.report import build_report as build

    pipetrace.configure(home=tmp_path, exporters="store", export_interval_s=0.05)
    sizes = {}
    for n in (10, 410):
        run_id = f"size-{n}"
        for i in range(n):
            with pipetrace.task_span("python", "size_etl", run_id, f"task_{i}", attributes={"rows": i}):
                pass
        pipetrace.run_span("python", "size_etl", run_id, start=0.0, end=1.0, result="success")
        assert pipetrace.force_flush(10)
        html = build(SpanStore(tmp_path / "traces.db"), run_id)
        assert html is not None
        sizes[n] = len(html.encode())
    per_span = (sizes[410] - sizes[10]) / 400
    pipetrace.shutdown(5)
    print(f"report bytes per span: {per_span:.0f}")
    assert 1000 < per_span < 3000, per_span
