"""Interleaved timing of warm variants, and the statistics quoted from it.

The machine is shared and noisy: every round runs one batch of each variant, in an order
rotated each round, so that a burst of noise spreads over all variants instead of landing
on one. Each call is timed on its own; medians and 99th percentiles are quoted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.variants import Variant

__all__ = ["Summary", "check_same_body", "run_interleaved", "summarise"]


@dataclass(frozen=True)
class Summary:
    """Distribution of one variant's per-call times, in microseconds."""

    median_us: float
    p99_us: float
    samples: int


def summarise(samples_ns: Sequence[int]) -> Summary:
    """Median and 99th percentile (inclusive method) of per-call times given in nanoseconds."""
    if len(samples_ns) < 2:
        raise ValueError("need at least two samples")
    p99 = statistics.quantiles(samples_ns, n=100, method="inclusive")[98]
    return Summary(statistics.median(samples_ns) / 1000, p99 / 1000, len(samples_ns))


def check_same_body(variants: Sequence[Variant], event: dict[str, Any], context: Any) -> str:
    """Serve `event` once with each variant; every users-returning one must answer 200 with the same body."""
    bodies: dict[str, str] = {}
    for variant in variants:
        if not variant.returns_users:
            continue
        variant.activate()
        try:
            response = variant.serve(event, context)
        finally:
            variant.deactivate()
        if response.get("statusCode") != 200:
            raise AssertionError(f"{variant.key}: status {response.get('statusCode')}, body {response.get('body')!r}")
        bodies[variant.key] = response["body"]
    expected = next(iter(bodies.values()))
    different = [key for key, body in bodies.items() if body != expected]
    if different:
        raise AssertionError(f"bodies differ from {next(iter(bodies))}'s: {different}")
    return expected


def run_interleaved(
    variants: Sequence[Variant], event: dict[str, Any], context: Any, *, rounds: int, calls: int, warmup: int
) -> dict[str, list[int]]:
    """Per-call times in ns of every variant: `warmup` untimed calls each, then `rounds` rotated batches of `calls`."""
    for variant in variants:
        _batch(variant, event, context, warmup, [])
    samples: dict[str, list[int]] = {variant.key: [] for variant in variants}
    for round_index in range(rounds):
        shift = round_index % len(variants)
        for variant in [*variants[shift:], *variants[:shift]]:
            _batch(variant, event, context, calls, samples[variant.key])
    return samples


def _batch(variant: Variant, event: dict[str, Any], context: Any, calls: int, into: list[int]) -> None:
    serve, clock = variant.serve, time.perf_counter_ns
    variant.activate()
    try:
        for _ in range(calls):
            started = clock()
            serve(event, context)
            into.append(clock() - started)
    finally:
        variant.deactivate()
