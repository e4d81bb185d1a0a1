"""``pipetrace report``: one self-contained HTML file that renders the same run from file:// offline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipetrace.store import SpanStore
from pipetrace.store.formats import to_otlp_json
from viewer_helpers import Console, pipetrace_cli, seed


@pytest.fixture(scope="module")
def report_home(tmp_path_factory: pytest.TempPathFactory, store_backend: str) -> tuple[Path, dict[str, Any]]:
    home = tmp_path_factory.mktemp("report-home")
    return home, seed(home, "basic", "hostile")


@pytest.fixture()
def offline(browser: Any) -> Iterator[tuple[Any, list[str]]]:
    """A page with the network cut: anything but file:// is aborted and recorded."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True, offline=True)
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))

    def block(route: Any) -> None:
        if route.request.url.startswith(("file://", "blob:", "data:")):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", block)
    page = context.new_page()
    page.console = Console(page)
    yield page, requests
    context.close()


def make_report(home: Path, ident: str, out: Path) -> Path:
    result = pipetrace_cli(home, "report", ident, "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.exists() and "wrote" in result.stderr
    return out


def test_report_renders_offline_from_file(offline: tuple[Any, list[str]], report_home: tuple[Path, dict[str, Any]],
                                          tmp_path: Path) -> None:
    page, requests = offline
    home, data = report_home
    run = data["sales"][3]  # failure + retry, links in the run, consumed by another run
    html = make_report(home, run["run_id"], tmp_path / "run.html").read_text()
    assert "<script src" not in html and "<link rel=\"stylesheet\"" not in html  # nothing to fetch

    page.goto((tmp_path / "run.html").as_uri())
    page.wait_for_selector("body[data-ready='1'] .wf-row")
    assert page.locator(".wf-row").count() == 8
    crit = set(page.eval_on_selector_all(".wf-row.crit", "els => els.map(e => e.dataset.span)"))
    assert {run["run_span"], run["extract"], run["batch"], run["transforms"][1], run["load"]} <= crit
    assert run["transforms"][0] not in crit
    # collapse hides children here too
    page.click(f".wf-row[data-span='{run['batch']}'] .wf-toggle")
    page.wait_for_function("() => document.querySelectorAll('.wf-row').length === 5")
    page.click(f".wf-row[data-span='{run['batch']}'] .wf-toggle")
    # a link inside the run opens the linked span
    page.click(f".wf-row[data-span='{run['load']}'] .wf-label")
    page.click(f".detail .link-target[data-span='{run['transforms'][2]}']")
    page.wait_for_selector(f".wf-row.sel[data-span='{run['transforms'][2]}']")
    # flame graph and task history come from the embedded data
    page.click(".tab[data-tab=flame]")
    page.wait_for_selector(".flame-svg .frame[data-name='task load']")
    page.click(".tab[data-tab=history]")
    page.click(".hist-item[data-task=load]")
    page.wait_for_selector("[data-stat=p50]")
    assert page.locator("[data-stat=attempts]").inner_text() == "7"
    # the download buttons work without a server
    store = SpanStore(home / "traces.db")
    spans = store.trace(run["trace_id"])
    store.close()
    with page.expect_download() as info:
        page.click("button[data-download=otlp-json]")
    assert json.loads(Path(info.value.path()).read_text()) == json.loads(json.dumps(to_otlp_json(spans)))
    assert all(u.startswith(("file://", "blob:", "data:")) for u in requests), requests
    assert page.console.errors == []


def test_report_cross_trace_link_explains_instead_of_fetching(offline: tuple[Any, list[str]],
                                                              report_home: tuple[Path, dict[str, Any]],
                                                              tmp_path: Path) -> None:
    page, requests = offline
    home, data = report_home
    ev = data["events"][0]
    make_report(home, ev["trace_id"], tmp_path / "ev.html")
    page.goto((tmp_path / "ev.html").as_uri())
    page.wait_for_selector("body[data-ready='1'] .wf-row")
    page.click(f".wf-row[data-span='{ev['consume']}'] .wf-label")
    target = page.locator(".detail .link-target")
    assert "daily_sales" in target.inner_text()
    target.click()
    assert "pipetrace ui" in page.locator(".notice").inner_text()
    assert all(u.startswith(("file://", "blob:", "data:")) for u in requests), requests
    assert page.console.errors == []


def test_report_shows_hostile_names_as_text(offline: tuple[Any, list[str]], report_home: tuple[Path, dict[str, Any]],
                                           tmp_path: Path) -> None:
    page, _ = offline
    home, data = report_home
    bad = data["hostile"]
    make_report(home, bad["trace_id"], tmp_path / "bad.html")
    page.goto((tmp_path / "bad.html").as_uri())
    page.wait_for_selector("body[data-ready='1'] .wf-row")
    assert page.locator(".wf-row").count() == 2
    assert bad["nasty"] in page.locator(".run-title h1").inner_text()
    page.locator(".wf-row.err .wf-label").nth(1).click()  # the task (the run span failed too)
    assert bad["nasty"] in page.locator(".detail .exception").inner_text()
    assert page.evaluate("() => document.body.dataset.pwned") is None
    assert page.locator("img").count() == 0
    assert page.console.errors == []


def test_report_for_unknown_run_fails_cleanly(report_home: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    result = pipetrace_cli(report_home[0], "report", "no-such-run", "-o", str(tmp_path / "x.html"))
    assert result.returncode == 1 and "no trace found" in result.stderr
    assert not (tmp_path / "x.html").exists()
