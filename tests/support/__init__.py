"""Helpers the tests import; fixtures stay in the conftest.py files.

- lambda_events: event builders, `make_<shape>_event`, and `response_headers`
- payloads: `load_event` for the sample events in events/ and the fixtures in tests/payloads/
- lambda_context: FakeContext, the context object a handler is called with
- engines: an app's engine and pool, counters of its connections and statements
- logs: the JSON log lines a test captured
- tables: users tables (the bundled names, generated tables of up to 1M users)
- names: names that break naive formats, and reading a text page back
- gateway: a client of the deployed function (URLs in, events out, `next` links followed)
- snapshots, moto_iam: the S3 snapshot the storage tests serve; moto with IAM enforced
- serverless_cli, runtime_api, runtime_client, primed_handler: the deploy tests' CLI,
  Runtime API, awslambdaric process, and a handler primed at init
- postgres_cluster, pgbouncer, network_partition: the PostgreSQL tests' throwaway servers
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ROOT"]

ROOT = Path(__file__).resolve().parents[2]  # the repository root
