"""`handler.handler` under AWS's Python runtime interface client (awslambdaric), as Lambda runs it.

One `python -m awslambdaric handler.handler` process (cwd: the repository root, the package root
on Lambda) polls the Runtime API in tests/support/runtime_api.py and is fed AWS's sample events
(tests/payloads/aws/). Its stdout is the function's log: JSON lines only.

Lambda Managed Instances (AWS_LAMBDA_MAX_CONCURRENCY=N): awslambdaric 4.2.2 forks N worker
processes from the runtime process (awslambdaric/lambda_multi_concurrent_utils.py,
MultiConcurrentRunner.run_concurrent, multiprocessing "fork" context); each worker runs
bootstrap.run, so each imports the handler (its own init, app, engine and cold start) and polls
/invocation/next on its own. The parent never imports the handler.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.payloads import aws_sample_names, load_event
from tests.support.runtime_api import Answer, RuntimeApi
from tests.support.runtime_client import PRIMED_HANDLER, TIMEOUT_SECONDS, RuntimeProcess, sqlite_copy_path
from tests.support.tables import SEED_NAMES

ROUNDS = 3
WORKERS = 4


def _open_files_under(pid: int, directory: Path) -> list[str]:
    """Paths under `directory` that process `pid` has open (Linux /proc/<pid>/fd)."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith(f"{directory}/"):
            found.append(target)
    return sorted(found)


def _queue_samples(api: RuntimeApi, count: int) -> list[tuple[str, str]]:
    """(sample name, request id) for `count` events, cycling through AWS's samples."""
    names = aws_sample_names()
    return [(name, api.queue_event(load_event(f"aws/{name}"))) for name in (names * count)[:count]]


def _assert_served(sample: str, answer: Answer) -> None:
    assert answer.kind == "response", f"{sample}: {answer.body[:500]!r}"
    response = answer.json()
    assert (sample, response["statusCode"], response["body"]) == (sample, 200, SEED_NAMES)
    assert response["isBase64Encoded"] is False


def test_runtime_client_serves_samples_warm_after_one_cold_start(
    start_runtime: Callable[..., RuntimeProcess],
) -> None:
    with RuntimeApi() as api:
        runtime = start_runtime(api)
        queued = _queue_samples(api, ROUNDS * len(aws_sample_names()))
        answers = runtime.wait_for_answers(api, [request_id for _, request_id in queued])
        runtime.stop()
        assert api.rejected == []

    for sample, request_id in queued:
        _assert_served(sample, answers[request_id])
    lines = runtime.log_lines()
    assert len([line for line in lines if line["message"] == "app initialised"]) == 1
    invocations = [line for line in lines if line["message"] == "invocation"]
    # The context awslambdaric builds carries the Runtime API's request id into every line.
    assert [line["request_id"] for line in invocations] == [request_id for _, request_id in queued]
    assert [line["cold_start"] for line in invocations] == [True] + [False] * (len(queued) - 1)


def test_runtime_client_managed_instances_workers_share_one_copy(
    start_runtime: Callable[..., RuntimeProcess], tmp_path: Path
) -> None:
    with RuntimeApi() as api:
        runtime = start_runtime(api, AWS_LAMBDA_MAX_CONCURRENCY=str(WORKERS))
        queued: list[tuple[str, str]] = []
        for _ in range(ROUNDS):
            # Every worker blocked on /next at once, then one event each: WORKERS invocations in flight.
            runtime.wait_for_pollers(api, WORKERS)
            batch = _queue_samples(api, WORKERS)
            runtime.wait_for_answers(api, [request_id for _, request_id in batch])
            queued += batch
        burst = _queue_samples(api, 5 * WORKERS)
        runtime.wait_for_answers(api, [request_id for _, request_id in burst])
        queued += burst
        workers = runtime.worker_pids()
        runtime.stop()
        answers = {answer.request_id: answer for answer in api.answers}
        assert api.rejected == []
        max_in_flight = api.max_in_flight

    assert len(workers) == WORKERS
    assert max_in_flight >= 2
    for sample, request_id in queued:
        _assert_served(sample, answers[request_id])
    lines = runtime.log_lines()
    inits = [line for line in lines if line["message"] == "app initialised"]
    # One init per worker: each imports the handler once, after the fork.
    assert len(inits) == WORKERS
    assert {_init_database(line) for line in inits} == {_init_database(inits[0])}
    assert str(sqlite_copy_path(tmp_path)) in _init_database(inits[0])
    invocations = [line for line in lines if line["message"] == "invocation"]
    assert sorted(line["request_id"] for line in invocations) == sorted(request_id for _, request_id in queued)
    assert [line["cold_start"] for line in invocations].count(True) == WORKERS
    # Concurrent cold starts copied the bundle atomically: no temp file left beside the copy.
    assert [path.name for path in sqlite_copy_path(tmp_path).parent.iterdir()] == ["users.db"]


def _init_database(init_line: dict[str, Any]) -> str:
    """The database an "app initialised" line names (the /tmp copy's URL for the bundle)."""
    database: str = init_line["database"]
    return database


# --- SnapStart --------------------------------------------------------------------------
# awslambdaric 4.2.2 with AWS_LAMBDA_INITIALIZATION_TYPE=snap-start imports the handler, runs the
# before-snapshot hooks, blocks on GET /2018-06-01/runtime/restore/next until the snapshot is
# "restored", runs the after-restore hooks, then polls /invocation/next. The Runtime API here
# holds the restore, so the test can change the world in between, as a restore elsewhere would.


def test_snapstart_hooks_remake_the_copy_and_serve_after_restore(
    start_runtime: Callable[..., RuntimeProcess], tmp_path: Path
) -> None:
    with RuntimeApi(restore_released=False) as api:
        # GIVEN a SnapStart init that made the /tmp copy, read it (a primed pool), and is now snapshotted
        runtime = start_runtime(api, handler=PRIMED_HANDLER, AWS_LAMBDA_INITIALIZATION_TYPE="snap-start")
        api.wait_for_restore_poll(timeout=TIMEOUT_SECONDS)
        copy = sqlite_copy_path(tmp_path)
        assert copy.is_file()
        # THEN the snapshot would hold no open file of the copy: the hook closed the primed connection
        assert _open_files_under(runtime.process.pid, copy.parent) == []

        # WHEN it is restored where that file is gone (a restored sandbox trusts no pre-snapshot file)
        copy.unlink()
        api.release_restore()
        request_ids = [api.queue_event(load_event("aws/apigateway-http-api-proxy")) for _ in range(3)]
        answers = runtime.wait_for_answers(api, request_ids)
        runtime.stop()

    # THEN the hooks ran in order, the copy was made again, and every invocation is served
    served = [answers[request_id].json() for request_id in request_ids]
    assert [(response["statusCode"], response["body"]) for response in served] == [(200, SEED_NAMES)] * 3
    assert copy.is_file()
    assert [line["message"] for line in runtime.log_lines() if line["level"] == "WARNING"] == []
    messages = [line["message"] for line in runtime.log_lines()]
    assert messages.index("before snapshot: connections closed") < messages.index("after restore: ready")
    assert messages.index("after restore: ready") < messages.index("invocation")
    restored = next(line for line in runtime.log_lines() if line["message"] == "after restore: ready")
    assert restored["bundle_copied"] is True
    assert not api.restore_errors and not api.init_errors


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        pytest.param({"DB_POOL_SIZE": "lots"}, "DB_POOL_SIZE", id="bad-integer"),
        pytest.param({"DB_POOL_SIZE": "\u4e94"}, "DB_POOL_SIZE", id="non-ascii-value"),
        pytest.param({"DATABASE_URL": "mysql://app:Hunter2Secret@db/users"}, "DATABASE_URL", id="unsupported-dialect"),
    ],
)
def test_runtime_client_bad_setting_is_one_json_line_and_the_init_error(
    env: dict[str, str], variable: str, start_runtime: Callable[..., RuntimeProcess]
) -> None:
    with RuntimeApi() as api:
        runtime = start_runtime(api, **env)
        deadline = time.monotonic() + TIMEOUT_SECONDS
        # The runtime posts the init error, then exits: wait for the post, not the exit.
        while not api.init_errors and time.monotonic() < deadline:
            time.sleep(0.05)
        runtime.stop()
        init_errors = api.init_errors

    assert len(init_errors) == 1, runtime.output_tail()
    error = init_errors[0].json()
    assert error["errorType"] == "SettingsError"
    assert error["errorMessage"].startswith(f"{variable} ")
    # Ours: one JSON line. The runtime's own: a warning and the init error, as text (not ours to shape).
    stdout = runtime.stdout_path.read_text(encoding="utf-8").splitlines()
    ours = [json.loads(line) for line in stdout if line.startswith("{")]
    assert [(line["level"], line["message"], line["error_type"], line["error"]) for line in ours] == [
        ("ERROR", "init failed", "SettingsError", error["errorMessage"])
    ]
    assert any(line.startswith(f"[ERROR] SettingsError: {error['errorMessage']}") for line in stdout)
    everything = runtime.output_tail() + init_errors[0].body.decode()
    assert "Hunter2Secret" not in everything
