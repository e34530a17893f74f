"""bench/baseline.json: the "before" column of RESULTS.md, holding only what that table reads."""

from __future__ import annotations

import json
from typing import Any

from bench.__main__ import BASELINE_PATH, BASELINE_SECTIONS
from bench.cold import COLD_TARGETS
from bench.report import _before_after

BASELINE: dict[str, Any] = json.loads(BASELINE_PATH.read_text(encoding="utf-8"))


def test_bench_baseline_holds_only_the_sections_the_report_reads() -> None:
    assert set(BASELINE) == set(BASELINE_SECTIONS)


def test_bench_baseline_cold_starts_name_modules_that_exist() -> None:
    assert set(BASELINE["cold"]) <= set(COLD_TARGETS)


def test_bench_baseline_renders_every_row_of_the_before_after_table() -> None:
    # GIVEN the committed baseline as both runs
    lines = _before_after(BASELINE, BASELINE)

    # THEN every warm variant has its row, unchanged, and both extra measures are there
    table = "\n".join(lines)
    for entry in BASELINE["warm"].values():
        assert f"| {entry['label']} |" in table
    assert table.count("| +0% |") == len(BASELINE["warm"])
    assert "| handler.handler at 100k rows, as deployed (ms) |" in table
    assert "| cold start, import + first request (ms) |" in table
