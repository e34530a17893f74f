"""Compile the Python sources in a deployment zip to bytecode, inside the zip.

    python3.13 scripts/compile_artifact.py .serverless/users-api.zip --runtime python3.13

`osls package` runs this through serverless-plugins/artifact.js once the zip holds the app and
its dependencies. Lambda's /var/task is read-only, so a zip without bytecode makes every cold
start compile every module it imports from source (`make bench-artifact` measures what that costs).

The bytecode must be valid for the runtime's Python (the magic number changes with each minor
version, so only that interpreter may write it) and must survive the zip. Timestamp-checked
.pyc files (Python's default) record the source's mtime and size; the packager normalises the
zip's file times and nothing promises the times Lambda extracts with, so they would be rejected
and the sources compiled anyway. `unchecked-hash` .pyc files record a hash of the source
instead, and the import system uses them without reading or even stat-ing the source: right for
an immutable artifact, and the cheapest mode to load. (`checked-hash` would also survive the
zip, but hashes every source at every cold start.) The sources stay in the zip for tracebacks.
"""

from __future__ import annotations

import argparse
import compileall
import os
import py_compile
import re
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["ArtifactError", "compile_artifact", "is_bytecode", "main", "runtime_version"]

# Where Lambda unpacks the zip: the file name compiled into each code object, as a traceback
# on Lambda would show it (the import system points it at the real source path on load).
LAMBDA_TASK_ROOT: str = "/var/task"
# The zip format's earliest time: the packager gives every entry a fixed time, so do we.
ZIP_EPOCH: tuple[int, int, int, int, int, int] = (1980, 1, 1, 0, 0, 0)
PYC_MODE: int = 0o100644

_RUNTIME = re.compile(r"python(?P<major>\d+)\.(?P<minor>\d+)")


class ArtifactError(Exception):
    """Raised when the artifact cannot be compiled: the wrong interpreter, or a source that does not compile."""


def runtime_version(runtime: str) -> tuple[int, int]:
    """Return (major, minor) of a Lambda runtime name such as `python3.13`."""
    match = _RUNTIME.fullmatch(runtime)
    if match is None:
        raise ArtifactError(f"not a Lambda Python runtime: {runtime!r} (expected e.g. python3.13)")
    return int(match["major"]), int(match["minor"])


def is_bytecode(name: str) -> bool:
    """True for a zip entry that is bytecode: written by pip or a host Python, never trusted."""
    return name.endswith((".pyc", ".pyo")) or "__pycache__/" in f"/{name}"


def compile_artifact(artifact: Path, runtime: str) -> int:
    """Rewrite `artifact` with unchecked-hash bytecode next to every .py in it; return how many.

    Bytecode already in the zip is dropped first (it may be for another Python or mode).
    """
    wanted = runtime_version(runtime)
    if sys.version_info[:2] != wanted:
        found = ".".join(map(str, sys.version_info[:3]))
        raise ArtifactError(
            f"bytecode for {runtime} must be written by Python {wanted[0]}.{wanted[1]}, "
            f"but {sys.executable} is Python {found}"
        )
    with tempfile.TemporaryDirectory(prefix="compile-artifact-") as scratch:
        tree = Path(scratch) / "tree"
        with zipfile.ZipFile(artifact) as source:
            entries = [info for info in source.infolist() if not is_bytecode(info.filename)]
            source.extractall(tree, members=entries)
        # optimize=0: Lambda runs python without -O, so it looks for `name.cpython-313.pyc`.
        compiled_cleanly = compileall.compile_dir(
            tree,
            quiet=1,
            stripdir=str(tree),
            prependdir=LAMBDA_TASK_ROOT,
            optimize=0,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            workers=0,
        )
        if not compiled_cleanly:
            raise ArtifactError(f"some sources in {artifact} do not compile (listed above)")
        bytecode = sorted(path.relative_to(tree).as_posix() for path in tree.rglob("__pycache__/*.pyc"))
        _write_zip(artifact, tree, entries, bytecode)
    return len(bytecode)


def _write_zip(artifact: Path, tree: Path, entries: list[zipfile.ZipInfo], bytecode: list[str]) -> None:
    """Replace `artifact` atomically: its entries as they were, plus the bytecode, sorted by name."""
    added = []
    for name in bytecode:
        info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
        info.external_attr = PYC_MODE << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        added.append(info)
    fd, partial = tempfile.mkstemp(dir=artifact.parent, prefix=f".{artifact.name}.", suffix=".tmp")
    try:
        os.chmod(partial, artifact.stat().st_mode)  # mkstemp's 0600 would replace the packager's mode
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w") as target:
            for info in sorted([*entries, *added], key=lambda item: item.filename):
                target.writestr(info, b"" if info.is_dir() else (tree / info.filename).read_bytes())
        os.replace(partial, artifact)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("artifact", type=Path, help="the deployment zip, rewritten in place")
    parser.add_argument("--runtime", required=True, help="the Lambda runtime, e.g. python3.13")
    args = parser.parse_args(argv)
    try:
        count = compile_artifact(args.artifact, args.runtime)
    except ArtifactError as error:
        print(f"compile_artifact: {error}", file=sys.stderr)
        return 2
    print(f"compiled {count} modules for {args.runtime} (unchecked-hash) into {args.artifact.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
