"""Access control in real Chromium: a scoped token sees only its pipelines in the runs list, run pages,
search, task history, downloads and the API; a forged or missing token sees nothing; the admin sees all.

One viewer with an access file over the shared seeded store (daily_sales on airflow, ingest_events on
celery, hourly_rollup on dagster still running), one browser; a fresh context per principal.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pipetrace.ui import access as A
from test_viewer import wait_count
from viewer_helpers import Console, Viewer, start_viewer, stop_viewer

PASSWORD = "events-team-password-1"


@dataclass
class Guarded:
    viewer: Viewer
    data: dict[str, Any]
    tokens: dict[str, str]
    log: Path

    def base(self) -> str:
        return self.viewer.url


@pytest.fixture(scope="module")
def guarded(seeded: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    home, data = seeded
    where = tmp_path_factory.mktemp("access")
    tokens = {name: A.new_token() for name in ("sales", "root")}
    text = ('[[role]]\nname = "sales"\npipelines = ["daily_*"]\nsystems = ["airflow"]\n'
            '[[role]]\nname = "events"\npipelines = ["ingest_*", "hourly_*"]\n'
            + A.entry_toml("token", "sales-dash", ["sales"], tokens["sales"][1])
            + A.entry_toml("token", "root", ["admin"], tokens["root"][1])
            + A.entry_toml("user", "bob", ["events"], A.hash_password(PASSWORD)))
    (where / "access.toml").write_text(text)
    log = where / "access.log"
    v = start_viewer(home, "--access-file", str(where / "access.toml"), "--access-log", str(log))
    yield Guarded(v, data, {k: t for k, (t, _) in tokens.items()}, log)
    stop_viewer(v)


def new_page(browser: Any, **kw: Any) -> Any:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True, **kw)
    page = context.new_page()
    page.console = Console(page)
    return page


def api(page: Any, g: Guarded, path: str, **headers: str) -> tuple[int, Any]:
    resp = page.context.request.get(g.base().rstrip("/") + path, headers=headers or None)
    body = resp.body()
    return resp.status, json.loads(body) if body[:1] in (b"{", b"[") else body


def listed(page: Any) -> set[str]:
    return set(page.eval_on_selector_all("tr.run-row td.mono", "els => els.map(e => e.textContent)"))


def test_scoped_token_sees_only_its_pipelines(browser: Any, guarded: Guarded) -> None:
    g, data = guarded, guarded.data
    page = new_page(browser)
    page.goto(g.base() + "?token=" + g.tokens["sales"])  # the printed-URL flow: token → cookie → /
    assert page.url == g.base()
    page.wait_for_selector("tr.run-row")
    sales = {r["run_id"] for r in data["sales"]}
    assert listed(page) == sales
    assert page.eval_on_selector_all(".spark-card", "els => els.map(e => e.dataset.pipeline)") == ["daily_sales"]
    systems = page.eval_on_selector_all("select[name=system] option", "els => els.map(e => e.value)")
    assert systems == ["", "airflow"]
    page.fill("input[name=pipeline]", "ingest")  # searching for another team's pipeline finds nothing
    wait_count(page, "tr.run-row", 0)
    page.fill("input[name=pipeline]", "")
    wait_count(page, "tr.run-row", 6)

    own = data["sales"][4]
    page.goto(f"{g.base()}#/run/{own['trace_id']}")
    page.wait_for_selector("body[data-ready='1'] .wf-row")
    page.fill("input.search", "transform")
    wait_count(page, ".wf-row.match", 4)
    with page.expect_download() as info:
        page.click("button[data-download=otlp-json]")
    assert json.loads(Path(info.value.path()).read_text())["resourceSpans"]
    page.click(".tab[data-tab=history]")
    page.click(".hist-item[data-task=load]")
    page.wait_for_selector(".hist-svg .mark.mine", state="attached")
    assert page.console.errors == []

    other = data["events"][0]
    page.goto(f"{g.base()}#/run/{other['trace_id']}")  # exists, but not for this principal: not found
    page.wait_for_selector(".error-box")
    assert page.locator(".error-box").inner_text() == f"No trace {other['trace_id']} in the store."
    page.goto(f"{g.base()}#/run/{other['run_id']}")
    page.wait_for_selector(".error-box")
    assert "No trace" in page.locator(".error-box").inner_text()

    hidden = [f"/api/trace/{other['trace_id']}", f"/api/trace/{other['run_id']}",
              f"/api/trace/{data['live']['trace_id']}",
              f"/api/export/{other['trace_id']}?format=jaeger-json", f"/api/export/{other['run_id']}",
              "/api/history?pipeline=ingest_events&task=consume"]
    missing = f"/api/trace/{'ab' * 16}"
    assert api(page, g, missing)[0] == 404
    for path in hidden:
        status, body = api(page, g, path)
        assert status == 404 and body["error"] in ("no such trace or run", "no such pipeline"), path
    assert api(page, g, hidden[0])[1] == api(page, g, missing)[1]  # same answer as a trace that does not exist
    for query in ("pipeline=ingest*", "system=celery", "status=running", "pipeline=*"):
        status, doc = api(page, g, "/api/runs?" + query)
        assert status == 200 and {r["pipeline"] for r in doc["runs"]} <= {"daily_sales"}, query
        assert set(doc["pipelines"]) <= {"daily_sales"} and set(doc["systems"]) <= {"airflow"}
    assert api(page, g, f"/api/trace/{own['run_id']}")[0] == 200
    page.context.close()


def test_password_user_sees_its_team_and_links_into_hidden_runs_lose_their_details(browser: Any,
                                                                                   guarded: Guarded) -> None:
    g, data = guarded, guarded.data
    page = new_page(browser, http_credentials={"username": "bob", "password": PASSWORD})
    page.goto(g.base())  # no password prompt on the page itself: the sign-in page links to /login
    page.console.errors.clear()  # the sign-in page itself is a 401
    page.click("a[href='/login']")
    page.wait_for_selector("tr.run-row")
    assert page.url == g.base()
    assert listed(page) == {r["run_id"] for r in data["events"]} | {data["live"]["run_id"]}
    consume = data["events"][0]
    page.goto(f"{g.base()}#/run/{consume['trace_id']}")
    page.wait_for_selector("body[data-ready='1'] .wf-row")
    assert page.console.errors == []
    auth = "Basic " + base64.b64encode(f"bob:{PASSWORD}".encode()).decode()
    status, doc = api(page, g, f"/api/trace/{consume['trace_id']}", Authorization=auth)
    targets = list(doc["linked"].values())
    assert status == 200 and targets and all(t["trace"] == data["sales"][3]["trace_id"] for t in targets)
    assert all(t["name"] is None and t["pipeline"] is None and not t["stored"] for t in targets)
    assert api(page, g, f"/api/trace/{data['sales'][3]['trace_id']}", Authorization=auth)[0] == 404

    wrong = "Basic " + base64.b64encode(b"bob:guess").decode()
    assert api(page, g, "/api/runs", Authorization=wrong)[0] == 401
    page.context.close()


def test_forged_or_missing_token_sees_nothing_and_the_login_page_signs_in(browser: Any, guarded: Guarded) -> None:
    g, data = guarded, guarded.data
    page = new_page(browser)
    resp = page.goto(g.base())
    assert resp.status == 401 and "www-authenticate" not in resp.headers
    assert "Sign in" in page.locator("#login-reason").inner_text()
    assert page.locator("tr.run-row").count() == 0
    tid = data["sales"][0]["trace_id"]
    forged = g.tokens["sales"][:-1] + ("A" if g.tokens["sales"][-1] != "A" else "B")
    for headers in ({}, {"Authorization": f"Bearer {forged}"}, {"Authorization": "Basic !!!"},
                    {"Authorization": "Bearer " + "x" * 5000}):
        for path in ("/api/runs", f"/api/trace/{tid}", f"/api/export/{tid}", "/api/history?pipeline=a&task=b",
                     "/api/health"):
            status, body = api(page, g, path, **headers)
            assert status == 401 and set(body) == {"error"}, (path, headers)
    resp = page.goto(g.base() + "?token=" + forged)
    assert resp.status == 401 and "not valid" in page.locator("#login-reason").inner_text()
    page.context.add_cookies([{"name": "pipetrace_token", "value": forged, "url": g.base()}])
    assert page.goto(g.base()).status == 401
    # the sign-in form takes a real token and lands on the runs list
    page.fill("#token", g.tokens["sales"])
    page.click("button[type=submit]")
    page.wait_for_selector("tr.run-row")
    assert page.url == g.base() and listed(page) == {r["run_id"] for r in data["sales"]}
    page.context.close()


def test_admin_sees_everything_and_every_request_is_logged(browser: Any, guarded: Guarded) -> None:
    g, data = guarded, guarded.data
    page = new_page(browser)
    page.goto(g.base() + "?token=" + g.tokens["root"])
    page.wait_for_selector("tr.run-row")
    wait_count(page, "tr.run-row", 10)
    status, doc = api(page, g, f"/api/trace/{data['events'][0]['trace_id']}")
    assert status == 200 and all(t["stored"] and t["name"] for t in doc["linked"].values())
    assert api(page, g, "/api/history?pipeline=ingest_events&task=consume")[0] == 200
    assert page.console.errors == []
    page.context.close()
    lines = g.log.read_text().splitlines()
    fields = [line.split(" ") for line in lines]
    assert all(len(f) == 6 and f[0].endswith("Z") for f in fields)
    seen = {(f[1], f[5]) for f in fields}
    assert {("root", "200"), ("sales-dash", "200"), ("sales-dash", "404"), ("bob", "200"), ("-", "401"),
            ("root", "303")} <= seen
    text = g.log.read_text()
    assert g.tokens["sales"] not in text and g.tokens["root"] not in text and PASSWORD not in text
