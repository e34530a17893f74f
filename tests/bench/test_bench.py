"""The benchmark suite's own logic: statistics, interleaving, body checks, the floor, parsers.

No timing is asserted here (timings belong to bench/, run by `make bench`); these check that
what the benchmarks compute and compare is right.
"""

from __future__ import annotations

import contextlib
import pathlib
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app.adapter import LambdaHandler
from app.config import Settings
from bench.cold import ImportLine, parse_importtime
from bench.hotspots import package_of
from bench.report import targets
from bench.timing import check_same_body, run_interleaved, summarise
from bench.variants import FloorHandler, Variant
from tests.support.lambda_context import FakeContext
from tests.support.lambda_events import make_v1_event, response_headers
from tests.support.payloads import load_event


def test_bench_summarise_gives_median_and_p99_in_microseconds() -> None:
    samples_ns = [n * 1000 for n in range(1, 101)]

    summary = summarise(samples_ns)

    assert (summary.median_us, summary.samples) == (50.5, 100)
    assert summary.p99_us == pytest.approx(99.01)


def test_bench_run_interleaved_rotates_batches_and_times_every_call() -> None:
    calls: list[str] = []

    def recording(key: str) -> Variant:
        return Variant(key, key, lambda event, context: calls.append(key))

    variants = [recording(key) for key in "abc"]

    samples = run_interleaved(variants, {}, None, rounds=3, calls=2, warmup=1)

    assert calls[:3] == ["a", "b", "c"]  # warm-up
    assert calls[3:] == [*"aabbcc", *"bbccaa", *"ccaabb"]
    assert {key: len(times) for key, times in samples.items()} == {"a": 6, "b": 6, "c": 6}
    assert all(time_ns > 0 for times in samples.values() for time_ns in times)


def test_bench_run_interleaved_activates_around_each_batch() -> None:
    events: list[str] = []
    variant = Variant(
        "a",
        "a",
        lambda event, context: events.append("call"),
        activate=lambda: events.append("on"),
        deactivate=lambda: events.append("off"),
    )

    run_interleaved([variant], {}, None, rounds=2, calls=2, warmup=0)

    assert events == ["on", "off", *["on", "call", "call", "off"] * 2]


def _answering(body: str) -> Any:
    return lambda event, context: {"statusCode": 200, "body": body}


def test_bench_check_same_body_rejects_a_different_body() -> None:
    variants = [Variant("a", "a", _answering("x,y")), Variant("b", "b", _answering("x"))]

    with pytest.raises(AssertionError, match=r"bodies differ from a's: \['b'\]"):
        check_same_body(variants, {}, None)


def test_bench_check_same_body_skips_components_and_returns_the_body() -> None:
    variants = [
        Variant("a", "a", _answering("x,y")),
        Variant("hello", "hello", _answering("hello"), returns_users=False),
        Variant("b", "b", _answering("x,y")),
    ]

    assert check_same_body(variants, {}, None) == "x,y"


def test_bench_floor_answers_exactly_like_the_handler(
    lambda_handler: LambdaHandler, settings: Settings, context: FakeContext
) -> None:
    # GIVEN the floor on the database the handler serves (its /tmp copy)
    event = load_event("rest-v1")
    expected = lambda_handler(event, context)

    # WHEN the floor serves the same REST v1 event
    with contextlib.closing(FloorHandler(settings.sqlite_copy_path, etag=response_headers(expected)["etag"])) as floor:
        response = floor(event, context)

    # THEN the whole proxy response is the same
    assert response == expected


def test_bench_floor_answers_404_off_its_route(app: Flask, settings: Settings) -> None:
    # GIVEN the app, which made the /tmp copy; WHEN the floor gets another path; THEN 404
    with contextlib.closing(FloorHandler(settings.sqlite_copy_path)) as floor:
        response = floor(make_v1_event(path="/other"), None)

    assert response["statusCode"] == 404


IMPORTTIME_OUTPUT = """\
import time: self [us] | cumulative | imported package
import time:       125 |        125 |   _io
import time:       324 |        765 | _frozen_importlib_external
import time:      2200 |      91000 |     sqlalchemy
some other stderr line
import time:       900 |      95000 | handler
"""


def test_bench_parse_importtime_reads_times_and_nesting() -> None:
    lines = parse_importtime(IMPORTTIME_OUTPUT)

    assert lines == [
        ImportLine("_io", 125, 125, 1),
        ImportLine("_frozen_importlib_external", 324, 765, 0),
        ImportLine("sqlalchemy", 2200, 91000, 2),
        ImportLine("handler", 900, 95000, 0),
    ]


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        pytest.param("~", "C builtins", id="builtin"),
        pytest.param(str(Path(__file__).resolve().parent.parent / "app" / "db.py"), "ours", id="ours"),
        pytest.param(pytest.__file__, "pytest", id="site-packages"),
        pytest.param(pathlib.__file__, "stdlib: pathlib", id="stdlib"),
    ],
)
def test_bench_package_of_names_the_owner(filename: str, expected: str) -> None:
    assert package_of(filename) == expected


def _results(handler_us: float, apig_us: float, nullpool_us: float, cold_ms: float, reference_ms: float) -> Any:
    return {
        "warm": {
            "handler": {"median_us": handler_us},
            "apig_wsgi": {"median_us": apig_us},
            "nullpool": {"median_us": nullpool_us},
        },
        "cold": {"handler": {"total_ms": cold_ms}, "bench.cold_targets.reference": {"total_ms": reference_ms}},
    }


@pytest.mark.parametrize(
    ("figures", "met"),
    [
        pytest.param((130, 100, 169, 110, 100), [True, True, True], id="all-at-the-limit"),
        pytest.param((131, 100, 169, 111, 100), [False, False, False], id="all-just-over"),
    ],
)
def test_bench_targets_compare_against_the_issue_limits(figures: tuple[float, ...], met: list[bool]) -> None:
    assert [target.met for target in targets(_results(*figures))] == met
