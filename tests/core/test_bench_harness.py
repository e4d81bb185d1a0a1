"""The benchmarks' shared harness: rotation of the run order, spread, paired ratios, the span counter."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "_harness.py"


@pytest.fixture(scope="module")
def harness():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("_bench_harness", _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["_bench_harness"] = module
    spec.loader.exec_module(module)
    return module


def test_every_mode_runs_once_per_round_and_each_goes_first_in_turn(harness) -> None:  # noqa: ANN001
    calls: list[tuple[str, int]] = []
    results, loads = harness.paired_rounds(("a", "b", "c"), 3, lambda m, r: calls.append((m, r)) or f"{m}{r}")
    assert [c[0] for c in calls] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert results == {"a": ["a0", "a1", "a2"], "b": ["b0", "b1", "b2"], "c": ["c0", "c1", "c2"]}
    assert len(loads) == 3
    assert harness.rotated(("off", "on"), 0) == ["off", "on"] and harness.rotated(("off", "on"), 1) == ["on", "off"]


def test_spread_and_paired_ratios(harness) -> None:  # noqa: ANN001
    assert harness.spread([3.0, 1.0, 2.0, 10.0]) == (1.0, 2.5, 10.0)
    assert harness.fmt_spread([1.0, 2.0, 4.0]) == "2.00 (min 1.00, max 4.00)"
    ratios = harness.paired_ratios([2.0, 3.0, 1.0], [1.0, 2.0, 0.0])
    assert ratios[:2] == [2.0, 1.5] and math.isnan(ratios[2])
    assert harness.spread(ratios) == (1.5, 1.75, 2.0)  # a round without a ratio is left out, not sorted in
    assert harness.fmt_spread(ratios) == "1.75 (min 1.50, max 2.00, 1 of 3 rounds without a ratio)"
    assert harness.load_range(["1.5/1.0/0.5", "3.25/2.0/1.0"]) == "1.5–3.2"


def test_span_counter_counts_what_an_sdk_exporter_sends(harness) -> None:  # noqa: ANN001
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    with harness.SpanCounter() as receiver:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces")))
        for i in range(3):
            provider.get_tracer("t").start_span(f"task {i}").end()
        assert receiver.wait_for(3, 10)
        assert receiver.spans == 3 and receiver.names == {"task": 3} and receiver.bytes > 0
        assert receiver.requests == 3 and 0 < receiver.cpu_s < 5  # its handlers' CPU, up to each reply
        receiver.reset()
        assert receiver.spans == 0 and receiver.cpu_s == 0
        provider.shutdown()


def test_report_on_off_prints_both_measures_and_returns_their_rows(harness, capsys) -> None:  # noqa: ANN001
    from types import SimpleNamespace

    runs = {"off": [(1.0, 0.5), (2.0, 1.0)], "on": [(1.1, 0.55), (2.0, 1.2)]}
    args = SimpleNamespace(exporters="store,otlp", rounds=2, markdown=True)
    rows = harness.report_on_off(runs, ["1.0/1.0/1.0", "2.0/1.0/1.0"], [31, 30], args, name="Job", title="a job",
                                 script="job.py", per=10, unit="step", goal=1.05, before=("old wall", "old cpu"))
    out = capsys.readouterr().out
    assert out.startswith("a job, exporters store,otlp; spans received per traced run 30–31\n")
    assert out.rstrip().endswith(rows[1])
    assert "added per step +5.00 (min +0.00, max +10.00) ms" in out and "(goal: ratio <= 1.05)" in out
    measure = "with / without (`job.py --rounds 2`, exporters store,otlp)"
    assert rows == [f"| Job wall, {measure} | old wall | **1.050** | untraced | 1.000–1.100 | 1.0–2.0 |",
                    f"| Job CPU, {measure} | old cpu | **1.150** | untraced | 1.100–1.200 | 1.0–2.0 |"]


def test_shuffled_order_is_a_repeatable_permutation_that_changes_neighbours(harness) -> None:  # noqa: ANN001
    modes = ("a", "b", "c", "d", "e")
    orders = [harness.shuffled(modes, r) for r in range(20)]
    assert all(sorted(o) == sorted(modes) for o in orders)
    assert orders == [harness.shuffled(modes, r) for r in range(20)]  # seeded: the same run again
    after_a = {o[o.index("a") + 1] for o in orders if o[-1] != "a"}
    assert len(after_a) > 1  # rotation would always put "b" right after "a"
    calls: list[str] = []
    harness.paired_rounds(modes, 2, lambda m, r: calls.append(m), order=harness.shuffled)
    assert calls == [*harness.shuffled(modes, 0), *harness.shuffled(modes, 1)]


def test_added_ratio_is_the_ratio_of_medians_with_a_paired_bootstrap_interval(harness) -> None:  # noqa: ANN001
    ours = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    exact = harness.added_ratio(ours, [2 * v for v in ours])
    assert exact.of_medians == 0.5 and exact.ci == (0.5, 0.5)  # paired: every resample keeps the rounds' pairs
    assert exact.ci_text() == "95 % bootstrap CI 0.50–0.50" and exact.ratios == [0.5] * 7

    ref = [100.0, 250.0, 180.0, 90.0, 300.0, 150.0, 220.0, 170.0, 260.0, 120.0]
    noisy = harness.added_ratio([40.0, 160.0, 60.0, 10.0, 120.0, 90.0, 30.0, 110.0, 70.0, 50.0], ref)
    assert noisy.of_medians == pytest.approx(65.0 / 175.0)
    assert noisy.ci is not None and noisy.ci[0] < noisy.of_medians < noisy.ci[1]
    assert harness.added_ratio([40.0, 160.0, 60.0, 10.0, 120.0, 90.0, 30.0, 110.0, 70.0, 50.0], ref) == noisy

    # a reference that added nothing by its median has no ratio, and resamples like it push the upper end up
    lost = harness.added_ratio([10.0] * 8, [-5.0, -3.0, 1.0, -2.0, 4.0, -1.0, 2.0, -4.0])
    assert math.isnan(lost.of_medians) and lost.ci is not None and lost.ci[1] == math.inf
    assert harness.added_ratio([1.0] * 5, [2.0] * 5).ci is None  # under 6 rounds: no interval
    assert harness.added_ratio([1.0] * 5, [2.0] * 5).ci_text() == "too few rounds for an interval"
