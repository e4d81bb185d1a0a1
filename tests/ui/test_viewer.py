"""The live viewer in a real browser (Debian's Chromium via Playwright) against a seeded store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipetrace.store import SpanStore
from pipetrace.store.formats import to_jaeger_json, to_otlp_json
from viewer_helpers import Viewer, seed, start_viewer, stop_viewer


def rows(page: Any) -> list[str]:
    """Span ids of the waterfall rows in the DOM, top to bottom."""
    return page.eval_on_selector_all(".wf-row", "els => els.sort((a, b) => a.offsetTop - b.offsetTop)"
                                                ".map(e => e.dataset.span)")  # type: ignore[no-any-return]


def wait_count(page: Any, selector: str, n: int) -> None:
    """Wait until ``selector`` matches exactly ``n`` elements (a function, not a string: the page's CSP
    forbids eval)."""
    page.wait_for_function("([s, n]) => document.querySelectorAll(s).length === n", arg=[selector, n])


def bar_width(page: Any, span_id: str) -> float:
    return page.eval_on_selector(f".wf-row[data-span='{span_id}'] .wf-bar", "e => e.offsetWidth")  # type: ignore[no-any-return]


def open_run(page: Any, viewer: Viewer, trace_id: str, extra: str = "") -> None:
    page.goto(f"{viewer.url}#/run/{trace_id}{extra}")
    page.wait_for_selector("body[data-ready='1'] .wf-row")


def test_runs_list_shows_seeded_runs_filters_and_sparklines(page: Any, viewer: Viewer,
                                                           seeded: tuple[Path, dict[str, Any]]) -> None:
    _, data = seeded
    page.goto(viewer.url)
    page.wait_for_selector("tr.run-row")
    run_ids = page.eval_on_selector_all("tr.run-row td.mono", "els => els.map(e => e.textContent)")
    expected = {r["run_id"] for r in data["sales"]} | {r["run_id"] for r in data["events"]} | {data["live"]["run_id"]}
    assert set(run_ids) == expected and len(run_ids) == 10
    # newest first by default; the in-progress run is listed as running
    live = page.locator(f"tr.run-row[data-trace='{data['live']['trace_id']}']")
    assert "running" in live.inner_text() and "in-progress" in (live.get_attribute("class") or "")
    # one sparkline per pipeline, one bar per finished run, failures in the failure colour
    assert page.locator(".spark-card").count() == 3
    assert page.locator(".spark-card[data-pipeline='daily_sales'] rect.spark-bar").count() == 6
    assert page.locator(".spark-card[data-pipeline='ingest_events'] rect.spark-bar[fill='#dc3d43']").count() == 1
    # filters: system, status, duration, pipeline text
    page.select_option("select[name=system]", "celery")
    wait_count(page, "tr.run-row", 3)
    page.select_option("select[name=status]", "failure")
    wait_count(page, "tr.run-row", 1)
    assert page.locator("tr.run-row td.mono").inner_text() == data["events"][1]["run_id"]
    page.select_option("select[name=system]", "")
    page.select_option("select[name=status]", "")
    page.fill("input[name=min]", "4")
    wait_count(page, "tr.run-row", 6)
    page.fill("input[name=min]", "")
    page.fill("input[name=pipeline]", "ingest")
    wait_count(page, "tr.run-row", 3)
    page.fill("input[name=pipeline]", "")
    wait_count(page, "tr.run-row", 10)
    # sortable: duration ascending puts the shortest run (the 2 s in-progress one... or 1.6 s batch-0) first
    page.click("th[data-sort=duration_ms]")
    page.click("th[data-sort=duration_ms]")
    first = page.locator("tr.run-row td.mono").first.inner_text()
    assert first == data["events"][0]["run_id"]
    # local time shown, UTC on hover
    assert page.locator("tr.run-row time").first.get_attribute("title").endswith("UTC")
    assert page.console.errors == []


def test_live_refresh_picks_up_new_runs(page: Any, viewer: Viewer, tmp_path: Path) -> None:
    """A run recorded while the list is open appears without a reload (live refresh)."""
    home = tmp_path / "home"
    seed(home, "basic")
    v = start_viewer(home)
    try:
        page.goto(v.url)
        wait_count(page, "tr.run-row", 10)
        seed(home, "big=150")
        page.wait_for_selector("tr.run-row:has-text('big-1')", timeout=15_000)
        assert page.locator("tr.run-row").count() == 11
    finally:
        stop_viewer(v)
    assert page.console.errors == []


def test_click_run_opens_waterfall_collapse_and_critical_path(page: Any, viewer: Viewer,
                                                             seeded: tuple[Path, dict[str, Any]]) -> None:
    _, data = seeded
    run = data["sales"][2]
    page.goto(viewer.url)
    page.click(f"tr.run-row[data-trace='{run['trace_id']}']")
    page.wait_for_selector("body[data-ready='1'] .wf-row")
    assert page.url.endswith(f"#/run/{run['trace_id']}")
    order = rows(page)
    t0, t1, t2 = run["transforms"]
    assert order == [run["run_span"], run["extract"], run["batch"], t0, t1, t2, run["load"]]
    # the critical path: extract → the batch → its slowest transform → load, under the run span
    crit = set(page.eval_on_selector_all(".wf-row.crit", "els => els.map(e => e.dataset.span)"))
    assert crit == {run["run_span"], run["extract"], run["batch"], t1, run["load"]}
    assert page.locator(f".wf-row[data-span='{t1}'] .wf-bar.crit").count() == 1
    # collapsing the batch hides its children; expanding shows them again
    page.click(f".wf-row[data-span='{run['batch']}'] .wf-toggle")
    wait_count(page, ".wf-row", 4)
    assert rows(page) == [run["run_span"], run["extract"], run["batch"], run["load"]]
    assert page.locator(f".wf-row[data-span='{run['batch']}'] .count").inner_text() == "3"
    page.click(f".wf-row[data-span='{run['batch']}'] .wf-toggle")
    wait_count(page, ".wf-row", 7)
    # queue wait is drawn as its own segment before the extract bar
    queue = page.locator(f".wf-row[data-span='{run['extract']}'] .wf-queue")
    assert queue.count() == 1 and "350 ms" in queue.get_attribute("title")
    bar_left = page.eval_on_selector(f".wf-row[data-span='{run['extract']}'] .wf-bar", "e => e.offsetLeft")
    q_box = page.eval_on_selector(f".wf-row[data-span='{run['extract']}'] .wf-queue",
                                  "e => e.offsetLeft + e.offsetWidth")
    assert abs(bar_left - q_box) <= 2
    # zoom in and out changes the scale; Fit restores it
    before = bar_width(page, t1)
    page.click("button[title='zoom in']")
    page.wait_for_timeout(100)
    assert bar_width(page, t1) > before * 1.5
    page.click("button[title='show the whole run']")
    page.wait_for_timeout(100)
    assert abs(bar_width(page, t1) - before) < 2
    assert page.console.errors == []


def test_clicking_links_opens_linked_span_in_same_and_other_trace(page: Any, viewer: Viewer,
                                                                 seeded: tuple[Path, dict[str, Any]]) -> None:
    _, data = seeded
    run = data["sales"][2]
    open_run(page, viewer, run["trace_id"])
    page.click(f".wf-row[data-span='{run['load']}'] .wf-label")
    page.wait_for_selector(".detail .link-target")
    assert page.locator(".detail .link-target").count() == 3
    page.click(f".detail .link-target[data-span='{run['transforms'][0]}']")
    page.wait_for_selector(f".wf-row.sel[data-span='{run['transforms'][0]}']")
    assert page.locator(".detail-name").inner_text() == "task transform [0]"
    # the detail panel of the producer lists who consumed it
    assert "Linked from (1)" in page.locator(".detail").text_content()
    # the link drawn in the waterfall for the selected span
    assert page.locator("path.wf-link.strong").count() >= 1

    # across traces: an ingest_events run consumed a message produced by daily_sales' load
    ev, src = data["events"][0], data["sales"][3]
    open_run(page, viewer, ev["trace_id"])
    page.click(f".wf-row[data-span='{ev['consume']}'] .wf-label")
    target = page.locator(f".detail .link-target[data-span='{src['load']}']")
    assert "task load" in target.inner_text() and "daily_sales" in target.inner_text()
    target.click()
    page.wait_for_selector(f"body[data-ready='1'] .wf-row.sel[data-span='{src['load']}']")
    assert src["trace_id"] in page.url
    assert page.locator(".detail-name").inner_text() == "task load"
    assert page.console.errors == []


def test_errors_retries_and_exception_detail(page: Any, viewer: Viewer, seeded: tuple[Path, dict[str, Any]]) -> None:
    _, data = seeded
    run = data["sales"][3]  # its load failed once and was retried
    open_run(page, viewer, run["trace_id"])
    failed = page.locator(".wf-row.err")
    assert failed.count() == 1
    assert failed.locator(".err-mark").count() == 1
    assert page.locator(".wf-row .retry-mark").count() == 2  # the failed attempt (result retry) and attempt 2
    assert "1 retry" in page.locator(".run-meta").inner_text()
    failed.locator(".wf-label").click()
    exc = page.locator(".detail .exception")
    assert "ConnectionError" in exc.inner_text() and "warehouse connection reset" in exc.inner_text()
    assert page.console.errors == []


def test_search_flame_graph_and_task_history(page: Any, viewer: Viewer, seeded: tuple[Path, dict[str, Any]]) -> None:
    home, data = seeded
    run = data["sales"][4]
    open_run(page, viewer, run["trace_id"])
    page.fill("input.search", "transform")
    wait_count(page, ".wf-row.match", 4)
    page.press("input.search", "Enter")
    page.wait_for_selector(".wf-row.current.sel")
    assert "1 / 4" in page.locator(".search-info").inner_text()
    page.fill("input.search", "")

    page.click(".tab[data-tab=flame]")
    page.wait_for_selector(".flame-svg .frame")
    names = page.eval_on_selector_all(".flame-svg .frame", "els => els.map(e => e.dataset.name)")
    assert sorted(names) == sorted(["run daily_sales", "task extract", "batch transform", "task transform",
                                    "task load"])
    assert "×3" in page.locator(".flame-svg .frame[data-name='task transform'] text").text_content()
    page.click(".flame-svg .frame[data-name='batch transform']")  # zoom into a frame
    page.wait_for_selector(".flame-crumbs button:has-text('batch transform')")

    page.click(".tab[data-tab=history]")
    page.click(".hist-item[data-task=load]")
    page.wait_for_selector(".hist-svg .mark.mine", state="attached")
    store = SpanStore(home / "traces.db")
    stats = store.task_stats(pipeline="daily_sales", task="load")[0]
    store.close()
    shown = {k: page.locator(f"[data-stat='{k}']").inner_text() for k in ("attempts", "p50", "p95", "failures")}
    assert shown["attempts"] == str(stats.count) == "7"
    assert shown["failures"] == "1"
    assert shown["p50"] == "700 ms" and shown["p95"] == "700 ms"
    assert page.locator(".hist-svg rect.hbar").count() >= 1
    assert page.console.errors == []


def test_download_buttons_give_otlp_and_jaeger_json(page: Any, viewer: Viewer,
                                                    seeded: tuple[Path, dict[str, Any]]) -> None:
    home, data = seeded
    run = data["sales"][1]
    open_run(page, viewer, run["trace_id"])
    store = SpanStore(home / "traces.db")
    spans = store.trace(run["trace_id"])
    store.close()
    for fmt, expected in (("otlp-json", to_otlp_json(spans)), ("jaeger-json", to_jaeger_json(spans))):
        with page.expect_download() as info:
            page.click(f"button[data-download={fmt}]")
        dl = info.value
        assert dl.suggested_filename == f"{run['trace_id']}.{fmt.split('-')[0]}.json"
        assert json.loads(Path(dl.path()).read_text()) == json.loads(json.dumps(expected))
    assert page.console.errors == []
