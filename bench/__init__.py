"""Benchmarks: warm and cold invocation cost of `handler.handler` against a floor and a peer adapter.

Run them all with `make bench` (or `.venv/bin/python -m bench` once the `bench` group is
installed). Measurements run in child interpreters, so what the runner imports (matplotlib)
never weighs on them; results go to bench/RESULTS.md and bench/warm.png.
"""
