"""A 10,000-span run stays usable: first paint is timed (printed), rows are virtualised, scrolling works."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from viewer_helpers import Viewer, pipetrace_cli, seed, start_viewer, stop_viewer

SPANS = 10_000


@pytest.fixture(scope="module")
def big_home(tmp_path_factory: pytest.TempPathFactory, store_backend: str) -> tuple[Path, dict[str, Any]]:
    home = tmp_path_factory.mktemp("big-home")
    return home, seed(home, f"big={SPANS}")["big"]


@pytest.fixture(scope="module")
def big_viewer(big_home: tuple[Path, dict[str, Any]]) -> Iterator[Viewer]:
    v = start_viewer(big_home[0])
    yield v
    stop_viewer(v)


def first_paint(page: Any, url: str) -> float:
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_selector("body[data-ready='1'] .wf-row")
    return time.perf_counter() - start


def scroll_to_end(page: Any) -> None:
    page.eval_on_selector(".wf-body", "b => { b.scrollTop = b.scrollHeight; }")
    page.wait_for_timeout(150)


def test_big_run_live_first_paint_and_scroll(page: Any, big_viewer: Viewer,
                                             big_home: tuple[Path, dict[str, Any]]) -> None:
    info = big_home[1]
    assert info["spans"] == SPANS
    elapsed = first_paint(page, f"{big_viewer.url}#/run/{info['trace_id']}")
    print(f"\n10,000-span run, live viewer: first paint {elapsed:.2f} s")
    assert elapsed < 10  # the target is < 2 s; this bound only catches a broken (non-virtualised) page
    assert f"{SPANS} spans".replace(",", "") in page.locator(".run-meta").inner_text()
    in_dom = page.locator(".wf-row").count()
    assert 10 < in_dom < 200, in_dom  # virtualised: only the rows around the viewport exist
    start = time.perf_counter()
    for _ in range(30):
        page.mouse.move(700, 500)
        page.mouse.wheel(0, 1500)
    page.wait_for_timeout(50)
    print(f"30 wheel scrolls of 1500 px: {time.perf_counter() - start:.2f} s")
    scroll_to_end(page)
    last = page.eval_on_selector_all(".wf-row", "els => els.map(e => e.textContent)")
    assert any("chunk_099" in t for t in last)
    assert page.locator(".wf-row").count() < 200
    # collapse-all then a search still reaches a deep span
    page.click("button:has-text('Collapse all')")
    rows = "() => document.querySelector('.wf-spacer').offsetHeight / 24"  # rows the tree shows (virtualised)
    page.wait_for_function(rows + " === 101")
    page.fill("input.search", "chunk_042 #97")
    page.press("input.search", "Enter")
    page.wait_for_selector(".wf-row.sel.current:has-text('chunk_042 #97')")
    assert page.console.errors == []


def test_big_run_report_first_paint(page: Any, big_home: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    home, info = big_home
    out = tmp_path / "big.html"
    result = pipetrace_cli(home, "report", info["run_id"], "-o", str(out))
    assert result.returncode == 0, result.stderr
    elapsed = first_paint(page, out.as_uri())
    print(f"\n10,000-span run, report ({out.stat().st_size / 1e6:.1f} MB): first paint {elapsed:.2f} s")
    assert elapsed < 15
    assert page.locator(".wf-row").count() < 200
    page.click(".tab[data-tab=flame]")
    page.wait_for_selector(".flame-svg .frame")
    assert page.console.errors == []
