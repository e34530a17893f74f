"""Turn the measurements into bench/RESULTS.md and bench/warm.png."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cold import COPY_FUNCTION_NAME

__all__ = [
    "POSTGRES_NETWORK_HEADING",
    "Target",
    "draw_warm_chart",
    "compression_section",
    "postgres_network_section",
    "render_markdown",
    "replace_section",
    "targets",
    "where_the_time_goes",
]

# Issue #7's targets.
WARM_VS_APIG_MAX: float = 1.3
POOLED_VS_NULLPOOL_MIN: float = 1.3
COLD_VS_REFERENCE_MAX: float = 1.1

REFERENCE_MODULE: str = "bench.cold_targets.reference"
HELLO_MODULE: str = "bench.cold_targets.hello"
_OURS: frozenset[str] = frozenset({"handler", "nullpool", "engine_per_request", "handler_quiet"})


@dataclass(frozen=True)
class Target:
    """One of the issue's targets, as measured."""

    name: str
    measured: str
    met: bool


def targets(results: dict[str, Any]) -> list[Target]:
    warm, cold = results["warm"], results["cold"]
    handler_us = warm["handler"]["median_us"]
    vs_apig = handler_us / warm["apig_wsgi"]["median_us"]
    vs_nullpool = warm["nullpool"]["median_us"] / handler_us
    vs_reference = cold["handler"]["total_ms"] / cold[REFERENCE_MODULE]["total_ms"]
    return [
        Target(
            f"warm pooled handler ≤ {WARM_VS_APIG_MAX}× the same app under apig-wsgi",
            f"{vs_apig:.2f}× ({handler_us:.0f} vs {warm['apig_wsgi']['median_us']:.0f} µs)",
            vs_apig <= WARM_VS_APIG_MAX,
        ),
        Target(
            f"pooled ≥ {POOLED_VS_NULLPOOL_MIN}× faster than NullPool (SQLite)",
            f"{vs_nullpool:.2f}× ({handler_us:.0f} vs {warm['nullpool']['median_us']:.0f} µs)",
            vs_nullpool >= POOLED_VS_NULLPOOL_MIN,
        ),
        Target(
            f"cold start ≤ {COLD_VS_REFERENCE_MAX}× the bare Flask + SQLAlchemy + serverless-wsgi reference",
            f"{vs_reference:.2f}× ({cold['handler']['total_ms']:.0f} vs {cold[REFERENCE_MODULE]['total_ms']:.0f} ms)",
            vs_reference <= COLD_VS_REFERENCE_MAX,
        ),
    ]


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def where_the_time_goes(warm: dict[str, Any]) -> list[str]:
    """What the warm handler's median is made of, layer by layer, as Markdown bullets."""

    def us(key: str) -> float:
        return float(warm[key]["median_us"])

    return [
        f"- Flask + SQLAlchemy over the floor (the apig-wsgi variant minus the floor): "
        f"{us('apig_wsgi') - us('floor'):.0f} µs.",
        f"- serverless-wsgi over apig-wsgi on the same app: {us('serverless_wsgi') - us('apig_wsgi'):.0f} µs "
        f"(its Headers, environ re-encoding and second Response; not ours to remove: the handler must call it).",
        f"- Our invocation wrapper (event check, cold-start flag, timing, JSON line): "
        f"{us('handler') - us('serverless_wsgi'):.0f} µs, of which the JSON log line "
        f"{us('handler') - us('handler_quiet'):.0f} µs (LOG_LEVEL=WARNING turns it off).",
        f"- So, against the same app under apig-wsgi: serverless-wsgi alone is "
        f"{us('serverless_wsgi') / us('apig_wsgi'):.2f}×, the handler without its JSON line "
        f"{us('handler_quiet') / us('apig_wsgi'):.2f}×, the whole handler {us('handler') / us('apig_wsgi'):.2f}×.",
        f"- A conditional GET whose If-None-Match matches (304, no body, the database not read): "
        f"{us('handler_not_modified'):.0f} µs, {us('handler_not_modified') / us('handler'):.2f}× the 200's "
        f"{us('handler'):.0f} µs.",
    ]


def _facts(results: dict[str, Any]) -> list[list[str]]:
    warm, gc_runs, cold, imports = results["warm"], results["gc"], results["cold"], results["imports"]

    def us(key: str) -> float:
        return float(warm[key]["median_us"])

    rows = [
        [
            "Flask + serverless-wsgi alone, of a whole invocation (100 rows)",
            "~80 of ~160 µs",
            f"{us('hello_serverless_wsgi'):.0f} of {us('handler'):.0f} µs",
        ],
        [
            "SQLAlchemy over raw sqlite3 (the query alone)",
            "~40 µs",
            f"{us('query_sqlalchemy') - us('query_sqlite3'):.0f} µs "
            f"({us('query_sqlalchemy'):.0f} vs {us('query_sqlite3'):.0f})",
        ],
        [
            "serverless-wsgi over apig-wsgi",
            "~33 µs",
            f"{us('hello_serverless_wsgi') - us('hello_apig_wsgi'):.0f} µs on 'hello', "
            f"{us('serverless_wsgi') - us('apig_wsgi'):.0f} µs on /users",
        ],
    ]
    big = gc_runs.get("100000")
    if big:
        big_results = big["results"]
        unfrozen, frozen, off = (big_results[key]["median_us"] / 1000 for key in ("gc_unfrozen", "gc_frozen", "gc_off"))
        rows.append(
            [
                "cyclic GC share of a warm invocation at 100k rows; gc.freeze() after init",
                "close to half; roughly halves it",
                f"{_share(unfrozen - off, unfrozen)} ({unfrozen:.1f} ms, {off:.1f} without GC); "
                f"frozen: {frozen:.1f} ms, GC share {_share(frozen - off, frozen)}",
            ]
        )
    rows += [
        [
            "importing SQLAlchemy, of the cold start",
            "~90 of ~190 ms",
            f"{imports['cumulative'].get('sqlalchemy', 0):.0f} of {imports['import_handler_ms']:.0f} ms under "
            f"-X importtime (cold start without it: {cold['handler']['total_ms']:.0f} ms)",
        ],
        [
            "cyclic GC during a cold start",
            "15–30 ms",
            f"{cold[REFERENCE_MODULE]['gc_ms']:.1f} ms in the reference; {cold['handler']['gc_ms']:.1f} ms in the "
            "handler, which keeps the collector off during its init",
        ],
    ]
    return rows


def _share(part: float, whole: float) -> str:
    # A share measured as slightly negative is noise around zero.
    return f"{max(part, 0.0) / whole:.0%}"


def render_markdown(results: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    meta, warm, cold = results["meta"], results["warm"], results["cold"]
    floor_us, apig_us = warm["floor"]["median_us"], warm["apig_wsgi"]["median_us"]
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{meta['command']}` on {meta['date']} at commit `{meta['commit']}`.",
        f"Machine: {meta['machine']}. Load average before / after: {meta['load_before']} / {meta['load_after']}.",
        f"Versions: {', '.join(f'{name} {version}' for name, version in meta['versions'].items())}.",
        "",
        "Warm: REST v1 `GET /users` (the captured `events/rest-v1.json`) on a 100-user SQLite database, in-process;",
        f"{meta['warm_runs']} interpreters × {meta['warm_rounds']} rounds × {meta['warm_calls']} calls per variant, "
        "interleaved (one batch of each per round, order rotated),",
        "every call timed. Quoted: the median over the interpreters of each one's median and 99th percentile.",
        "All variants serving users return the same body. handler.py freezes its init's objects (`gc.freeze()`),",
        "which every variant in the interpreter then shares.",
        "",
        "## Targets",
        "",
        *_table(
            ["target", "measured", "met"],
            ((t.name, t.measured, "yes" if t.met else "**no**") for t in targets(results)),
        ),
        "",
        "What the warm handler's time is made of:",
        "",
        *where_the_time_goes(warm),
        "",
        "## Warm invocation",
        "",
        *_table(
            ["variant", "median µs", "p99 µs", "× floor", "× apig-wsgi", "medians across runs µs"],
            (
                (
                    row["label"],
                    f"{row['median_us']:.1f}",
                    f"{row['p99_us']:.1f}",
                    f"{row['median_us'] / floor_us:.2f}",
                    f"{row['median_us'] / apig_us:.2f}",
                    f"{row['spread'][0]:.0f}–{row['spread'][1]:.0f}",
                )
                for row in warm.values()
            ),
        ),
        "",
        "![Warm invocation cost per variant](warm.png)",
        "",
        "## Facts from the issue, checked",
        "",
        *_table(["claim", "issue", "measured here"], _facts(results)),
        "",
        "## Cyclic garbage collector, warm",
        "",
        "handler.handler with the collector as is, with everything allocated by the init frozen",
        "(`gc.freeze()`), and switched off (the lower bound); interleaved in one interpreter.",
        "",
        *_table(
            ["rows", "variant", "median", "p99"],
            (
                (rows, row["label"], _duration(row["median_us"]), _duration(row["p99_us"]))
                for rows, run in results["gc"].items()
                for row in run["results"].values()
            ),
        ),
        "",
        "## Where the time goes: profile",
        "",
        f"cProfile over {results['hotspots']['calls']} warm invocations of handler.handler (100 rows). cProfile",
        "inflates small Python calls, so read the shares; the absolute cost is in the warm table.",
        "",
        *_table(
            ["package", "share of own time"],
            (
                (row["package"], f"{row['share']:.1%}")
                for row in results["hotspots"]["packages"]
                if row["share"] >= 0.005
            ),
        ),
        "",
        *_table(
            ["function", "calls / invocation", "own µs / invocation", "cumulative µs / invocation"],
            (
                (
                    f"`{row['function']}`",
                    f"{row['ncalls'] / results['hotspots']['calls']:g}",
                    f"{row['own_us_per_invocation']:.1f}",
                    f"{row['cumulative_us_per_invocation']:.1f}",
                )
                for row in results["hotspots"]["functions"]
            ),
        ),
        "",
        "## Cold start",
        "",
        f"A fresh interpreter imports the module and serves the first request (same event); {meta['cold_runs']} runs",
        "each, interleaved, each with an empty copy path (a new container); medians. Import + first request is",
        "what the module costs; the process column adds interpreter start-up and exit.",
        "",
        *_table(
            ["module", "import ms", "first request ms", "import + first ms", "× reference", "GC ms", "process ms"],
            (
                (
                    row["label"],
                    f"{row['import_ms']:.1f}",
                    f"{row['first_request_ms']:.1f}",
                    f"{row['total_ms']:.1f}",
                    f"{row['total_ms'] / cold[REFERENCE_MODULE]['total_ms']:.2f}",
                    f"{row['gc_ms']:.1f}",
                    f"{row['process_ms']:.1f}",
                )
                for row in cold.values()
            ),
        ),
        "",
        f"Top import-time offenders of `import handler` (`python -X importtime`, median of {meta['importtime_runs']}",
        f"runs; importtime itself slows imports: {results['imports']['import_handler_ms']:.0f} ms in all):",
        "",
        *_table(
            ["package (own time of all its modules)", "ms", "module", "ms "],
            (
                (package["name"], f"{package['ms']:.1f}", f"`{module['name']}`", f"{module['ms']:.1f}")
                for package, module in zip(results["imports"]["packages"], results["imports"]["modules"], strict=True)
            ),
        ),
        "",
        f"Copying the bundled database to /tmp at cold start (`{COPY_FUNCTION_NAME}`), median",
        "of repeated runs; the bundle is in the page cache here, while a cold container reads it from its package:",
        "",
        *_table(
            ["bundle", "copy to an empty /tmp ms", "identical copy already there ms"],
            (
                (f"{row['size_mb']:.0f} MB", f"{row['copy_ms']:.1f}", f"{row['identical_ms']:.1f}")
                for row in results["copy"]
            ),
        ),
    ]
    if results.get("postgres_network") is not None:
        lines += ["", *postgres_network_section(results["postgres_network"])]
    if results.get("compression") is not None:
        lines += ["", *compression_section(results["compression"])]
    if baseline is not None:
        lines += ["", *_before_after(results, baseline)]
    return "\n".join(lines) + "\n"


POSTGRES_NETWORK_HEADING: str = "## PostgreSQL across a network"


def postgres_network_section(network: dict[str, Any]) -> list[str]:
    """bench/postgres_network.py's figures (its JSON) as a RESULTS.md section."""
    medians, p99, flights = network["medians_ms"], network["p99_ms"], network["flights"]
    warm_ratio = medians["warm_get"] / medians["warm_floor"]
    page_ratio = medians["page_get"] / medians["page_floor"]
    delay = network["delay_ms"]
    met = "met" if warm_ratio <= network["warm_target"] else "**not met**"
    rows = [
        ("warm GET /users, 100 users (`handler.handler`)", "warm_get", warm_ratio),
        ("floor: one psycopg autocommit query, 100 rows", "warm_floor", 1.0),
        (
            f"GET /users, unlimited: {network['page_rows']:,} names, {network['page_bytes'] / 1e6:.1f} MB",
            "page_get",
            page_ratio,
        ),
        (f"floor: one psycopg autocommit query, {network['page_rows']:,} rows", "page_floor", 1.0),
    ]
    return [
        POSTGRES_NETWORK_HEADING,
        "",
        f"Written by `python -m bench.postgres_network` on {network['date']} at commit `{network['commit']}`: a loopback",
        f"proxy (`bench/net_proxy.py`, in a process of its own) adds {delay:g} ms each way between the app and",
        "PostgreSQL, like a VPC hop; each request is timed against one psycopg autocommit query of the same rows",
        "through the same proxy, interleaved. Round trips: client-to-server flights the proxy counted for one request.",
        f"Target (issue #17): warm GET ≤ {network['warm_target']}× its floor — {warm_ratio:.2f}×, {met}. Before",
        "(issue #17, through PgBouncer told to drop `options`): `BEGIN`, the SELECT and `ROLLBACK` in 3 round",
        "trips, 10.6 ms against 3.0 ms, 3.5×.",
        "",
        *_table(
            ["request", "median ms", "p99 ms", "× floor", "round trips"],
            (
                (label, f"{medians[key]:.2f}", f"{p99[key]:.2f}", f"{ratio:.2f}", flights[key])
                for label, key, ratio in rows
            ),
        ),
    ]


COMPRESSION_HEADING: str = "## Compression"


def compression_section(figures: dict[str, Any]) -> list[str]:
    """bench/pagination.py's gzip figures (bench/compression.json) as a RESULTS.md section."""
    users = figures["users"]
    rows = []
    for case in figures["cases"]:
        names, size, cpu_ms = case["names"], case["bytes"], case["cpu_ms"]
        # A page that holds the whole table is not full: scale it to the budget (~ marks an estimate).
        full = f"{names:,}" if names < users else f"~{names * case['budget'] // size:,}"
        rows.append(
            (
                case["label"],
                f"{names:,}",
                f"{size / 1e6:.2f} MB",
                full,
                f"{cpu_ms:,.0f} ms",
                f"{cpu_ms / names * 1e6:,.0f} ns",
                f"{-(-users // names):,}",
            )
        )
    return [
        COMPRESSION_HEADING,
        "",
        f"Written by `python -m bench.pagination` on {figures['date']} at commit `{figures['commit']}` (Python",
        f"{figures['python']}): the first page of `GET /users` without `limit` on {users:,} users named `user<id>`,",
        "through `handler` with the captured REST and ALB sample events, as text and JSON, with and without",
        "`Accept-Encoding: gzip` (zlib level 1). Size: the proxy response JSON, base64 included. CPU: process time",
        f"per page, median of {figures['rounds']} interleaved rounds (SQLite reads and all). A gzip page holding",
        "the whole table is smaller than the limit: its names per full page are scaled to the limit (~). Pages:",
        f"how many a walk of the {users:,} names takes.",
        "",
        *_table(
            ["first page", "names", "response JSON", "names per full page", "CPU per page", "CPU per name", "pages"],
            rows,
        ),
    ]


def replace_section(markdown: str, section: Sequence[str]) -> str:
    """`markdown` with the section headed like `section[0]` replaced by it (appended if absent)."""
    lines = markdown.rstrip("\n").split("\n")
    heading = section[0]
    if heading in lines:
        start = lines.index(heading)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        while end > start and lines[end - 1] == "":
            end -= 1
        lines[start:end] = list(section)
    else:
        lines += ["", *section]
    return "\n".join(lines) + "\n"


def _before_after(results: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    warm, before = results["warm"], baseline["warm"]
    keys = [key for key in warm if key in before]
    lines = [
        "## Before / after the optimisations",
        "",
        "Before: `bench/baseline.json`, recorded with `python -m bench --save-baseline` at commit",
        f"`{baseline['meta']['commit']}` on {baseline['meta']['date']}, same machine. Runs at different times see",
        "different noise, so compare the ratios to the apig-wsgi variant measured in the same run too.",
        "",
        *_table(
            ["variant", "before µs", "after µs", "change", "before × apig-wsgi", "after × apig-wsgi"],
            (
                (
                    warm[key]["label"],
                    f"{before[key]['median_us']:.1f}",
                    f"{warm[key]['median_us']:.1f}",
                    f"{warm[key]['median_us'] / before[key]['median_us'] - 1:+.0%}",
                    f"{before[key]['median_us'] / before['apig_wsgi']['median_us']:.2f}",
                    f"{warm[key]['median_us'] / warm['apig_wsgi']['median_us']:.2f}",
                )
                for key in keys
            ),
        ),
    ]
    gc_before, gc_after = baseline.get("gc", {}).get("100000"), results["gc"].get("100000")
    cold_before, cold_after = baseline.get("cold", {}), results["cold"]
    extra = []
    if gc_before and gc_after:
        extra.append(
            (
                "handler.handler at 100k rows, as deployed (ms)",
                _as_deployed_ms(gc_before),
                _as_deployed_ms(gc_after),
            )
        )
    if "handler" in cold_before:
        extra.append(
            (
                "cold start, import + first request (ms)",
                f"{cold_before['handler']['total_ms']:.1f} ({cold_before['handler']['total_ms'] / cold_before[REFERENCE_MODULE]['total_ms']:.2f}× reference)",
                f"{cold_after['handler']['total_ms']:.1f} ({cold_after['handler']['total_ms'] / cold_after[REFERENCE_MODULE]['total_ms']:.2f}× reference)",
            )
        )
    if extra:
        lines += ["", *_table(["measure", "before", "after"], extra)]
    return lines


def _as_deployed_ms(gc_run: dict[str, Any]) -> str:
    key = "gc_frozen" if gc_run["frozen_at_init"] else "gc_unfrozen"
    return f"{gc_run['results'][key]['median_us'] / 1000:.1f}"


def _duration(microseconds: float) -> str:
    return f"{microseconds / 1000:.1f} ms" if microseconds >= 10_000 else f"{microseconds:.1f} µs"


def draw_warm_chart(results: dict[str, Any], path: Path) -> None:
    """Horizontal bars of each warm variant's median, whiskers to its p99."""
    import matplotlib  # bench dependency group; imported here so the tests need not install it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(results["warm"].items())[::-1]
    medians = [row["median_us"] for _, row in rows]
    whiskers = [[0.0] * len(rows), [row["p99_us"] - row["median_us"] for _, row in rows]]
    colours = ["tab:blue" if key in _OURS else "tab:gray" for key, _ in rows]
    figure, axes = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.5))
    axes.barh([row["label"] for _, row in rows], medians, xerr=whiskers, color=colours, capsize=3)
    for index, (_, row) in enumerate(rows):
        axes.text(row["p99_us"], index, f"  {row['median_us']:.0f}", va="center", ha="left", fontsize=8)
    axes.set_xlim(0, max(row["p99_us"] for _, row in rows) * 1.12)  # room for the labels
    axes.set_xlabel("µs per warm invocation (bar: median, whisker: p99)")
    meta = results["meta"]
    axes.set_title(f"users-api warm GET /users, 100 rows — {meta['commit']}, {meta['date'][:10]}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
