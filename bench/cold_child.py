"""One cold start in a fresh interpreter: import a handler module, serve its first request, report.

    python bench/cold_child.py MODULE EVENT_JSON RESULT_JSON

Run by bench.cold with PYTHONPATH at the repository root. It imports nothing before the clock
starts but `time`, `gc` and `sys` (built into the interpreter), so what it times is the
module's own import (the Lambda init) and its first invocation.
"""

from __future__ import annotations

import time

_started = time.perf_counter()

import gc  # noqa: E402 - after the clock on purpose
import sys  # noqa: E402

_gc = {"seconds": 0.0, "collections": 0, "since": 0.0}


def _time_collections(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc["since"] = time.perf_counter()
    else:
        _gc["seconds"] += time.perf_counter() - _gc["since"]
        _gc["collections"] += 1


class _Context:
    aws_request_id = "cold-start-bench"
    function_name = "users-api-bench"


def main(module_name: str, event_path: str, result_path: str) -> None:
    gc.callbacks.append(_time_collections)
    module = __import__(module_name, fromlist=["handler"])
    imported = time.perf_counter()
    import_gc = _gc["seconds"]

    import json  # the Lambda runtime parses the event before calling the handler: not ours to time

    with open(event_path, encoding="utf-8") as event_file:
        event = json.load(event_file)
    served_from = time.perf_counter()
    response = module.handler(event, _Context())
    served = time.perf_counter()
    gc.callbacks.remove(_time_collections)

    result = {
        "import_ms": (imported - _started) * 1000,
        "first_request_ms": (served - served_from) * 1000,
        "gc_ms": _gc["seconds"] * 1000,
        "import_gc_ms": import_gc * 1000,
        "gc_collections": _gc["collections"],
        "status": response["statusCode"],
        "body": response.get("body"),
    }
    with open(result_path, "w", encoding="utf-8") as result_file:
        json.dump(result, result_file)


if __name__ == "__main__":
    main(*sys.argv[1:4])
