"""The compression figures' RESULTS.md section (bench/pagination.py writes it, bench/report.py renders it)."""

from __future__ import annotations

from bench.report import compression_section


def test_compression_section_scales_a_page_holding_the_whole_table() -> None:
    figures = {
        "date": "2026-12-03",
        "commit": "abc1234",
        "python": "3.13.0",
        "users": 1_000_000,
        "rounds": 5,
        "cases": [
            {"label": "REST (6 MB), text", "names": 554_065, "bytes": 5_983_923, "budget": 5_983_616, "cpu_ms": 600.0},
            {
                "label": "REST (6 MB), text, gzip",
                "names": 1_000_000,
                "bytes": 3_000_000,
                "budget": 6_000_000,
                "cpu_ms": 1500,
            },
        ],
    }

    lines = compression_section(figures)

    assert lines[0] == "## Compression"
    # A full page as is; the gzip page, which holds all 1M names in 3 MB, scaled to its 6 MB budget.
    assert "| REST (6 MB), text | 554,065 | 5.98 MB | 554,065 | 600 ms | 1,083 ns | 2 |" in lines
    assert "| REST (6 MB), text, gzip | 1,000,000 | 3.00 MB | ~2,000,000 | 1,500 ms | 1,500 ns | 1 |" in lines
