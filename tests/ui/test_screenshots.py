"""Pictures of the viewer (runs list, waterfall, flame graph, task history) from a seeded store.

They are written to a temporary folder; set PIPETRACE_SCREENSHOTS=docs/images to refresh the ones the
README and docs/viewer.md show."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from viewer_helpers import Viewer, seed, start_viewer, stop_viewer


@pytest.fixture(scope="module")
def showcase(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Viewer, dict[str, Any]]]:
    home = tmp_path_factory.mktemp("showcase-home")
    data = seed(home, "basic", "showcase")
    v = start_viewer(home)
    yield v, data
    stop_viewer(v)


def test_screenshots(page: Any, showcase: tuple[Viewer, dict[str, Any]], tmp_path: Path) -> None:
    viewer, data = showcase
    out = Path(os.environ.get("PIPETRACE_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1400, "height": 820})
    page.goto(viewer.url)
    page.wait_for_selector("tr.run-row")
    page.screenshot(path=str(out / "runs-list.png"))

    run = data["showcase"][7]  # has a failed attempt and its retry
    page.goto(f"{viewer.url}#/run/{run['trace_id']}")
    page.wait_for_selector("body[data-ready='1'] .wf-row")
    page.locator(".wf-row:has-text('task transform_facts') .wf-label").last.click()
    page.wait_for_timeout(200)
    page.screenshot(path=str(out / "waterfall.png"))

    page.click(".tab[data-tab=flame]")
    page.wait_for_selector(".flame-svg .frame")
    page.screenshot(path=str(out / "flame-graph.png"))

    page.click(".tab[data-tab=history]")
    page.click(".hist-item[data-task=extract_orders]")
    page.wait_for_selector("[data-stat=p95]")
    page.screenshot(path=str(out / "task-history.png"))
    for name in ("runs-list", "waterfall", "flame-graph", "task-history"):
        assert (out / f"{name}.png").stat().st_size > 20_000
    assert page.console.errors == []
