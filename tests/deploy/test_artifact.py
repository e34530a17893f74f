"""The deployment artifact as Lambda runs it.

`osls package` builds the real zip once per session, in a copy of the project, with a
DATABASE_URL exported that must not reach the deployment. The zip is unzipped, made
read-only and imported the way the Lambda runtime does: its Python, `-S`,
PYTHONDONTWRITEBYTECODE=1, the zip's contents alone on sys.path. Every module must come
from the bytecode the artifact ships; a probe in the child process records any module the
import system compiles from source.
"""

from __future__ import annotations

import compileall
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT
from tests.support.payloads import SAMPLE_EVENTS_DIR
from tests.support.serverless_cli import CLI_TIMEOUT_SECONDS, OSLS, cli_env, needs_cli
from tests.support.tables import SEED_NAMES

SERVERLESS_CONFIG: dict[str, Any] = yaml.safe_load((ROOT / "serverless.yml").read_text(encoding="utf-8"))
RUNTIME: str = SERVERLESS_CONFIG["provider"]["runtime"]
RUNTIME_VERSION: str = RUNTIME.removeprefix("python")
# The interpreter behind this venv: the runtime's Python, without the venv's site-packages.
RUNTIME_PYTHON = Path(sys.base_prefix) / "bin" / RUNTIME
# In the exported DATABASE_URL: it must appear nowhere in what `osls package` writes.
LEAK_MARKER = "pw-must-not-deploy-7f3a9c"
# What pip and the packager may leave and Lambda never needs.
JUNK = re.compile(r"^(bin/|requirements\.txt$|\.completed_requirements$|[^/]+\.(dist|egg)-info/)|/tests?/")
PYC_SUFFIX = f".cpython-{RUNTIME_VERSION.replace('.', '')}.pyc"
# PEP 552 flags word of a .pyc: bit 0 hash-based, bit 1 check the source.
UNCHECKED_HASH_FLAGS = 0b01

# Runs in the child, first thing: record every module the import system compiles from source
# (SourceLoader.get_code calls source_to_code only when no valid bytecode is found), serve the
# event, and report what was loaded from where.
IMPORT_PROBE = """
import _frozen_importlib_external as external
compiled = []
_source_to_code = external.SourceLoader.source_to_code
def _recording_source_to_code(self, data, path, *args, **kwargs):
    compiled.append(path)
    return _source_to_code(self, data, path, *args, **kwargs)
external.SourceLoader.source_to_code = _recording_source_to_code

import json, os, sys

class Context:
    aws_request_id = "artifact-probe"
    function_name = "users-api-dev-api"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:users-api-dev-api"
    memory_limit_in_mb = "512"
    log_group_name = "/aws/lambda/users-api-dev-api"
    log_stream_name = "2026/11/28/[$LATEST]probe"
    def get_remaining_time_in_millis(self):
        return 10_000

with open(sys.argv[1], encoding="utf-8") as event_file:
    event = json.load(event_file)
import handler
response = handler.handler(event, Context())
task_root = os.getcwd()
files = {name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())}
print(json.dumps({
    "response": response,
    "compiled": compiled,
    "sys_path": sys.path,
    "task_root": task_root,
    "stdlib": os.path.dirname(os.__file__),
    "files": {name: path for name, path in files.items() if path},
    "no_bytecode": sorted(
        name for name, module in list(sys.modules.items())
        if isinstance(getattr(getattr(module, "__spec__", None), "loader", None), external.SourceFileLoader)
        and not os.path.exists(module.__spec__.cached)
    ),
}))
"""


def is_bytecode(name: str) -> bool:
    return name.endswith(".pyc") or "__pycache__/" in name


@dataclass(frozen=True)
class Artifact:
    zip_path: Path
    serverless_dir: Path  # what `osls package` wrote: .serverless/ of the project copy
    output: str  # the CLI's stdout + stderr
    tree: Path  # the zip unzipped, read-only


@dataclass(frozen=True)
class ProbeResult:
    response: dict[str, Any]
    compiled: list[str]
    no_bytecode: list[str]
    sys_path: list[str]
    task_root: str
    stdlib: str
    files: dict[str, str]


def _copy_project(destination: Path) -> Path:
    """The checkout without its venv, caches and build output, with node_modules linked in."""
    shutil.copytree(
        ROOT,
        destination,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "node_modules", ".serverless", "__pycache__", "*.pyc", ".*_cache", ".coverage"
        ),
    )
    (destination / "node_modules").symlink_to(ROOT / "node_modules", target_is_directory=True)
    return destination


def _make_read_only(tree: Path) -> None:
    for path in tree.rglob("*"):
        path.chmod(0o555 if path.is_dir() else 0o444)
    tree.chmod(0o555)


def _snapshot(tree: Path) -> dict[str, tuple[int, int]]:
    return {str(path.relative_to(tree)): (path.stat().st_size, path.stat().st_mtime_ns) for path in tree.rglob("*")}


@pytest.fixture(scope="session")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    if shutil.which("node") is None or not OSLS.exists():
        pytest.skip("Serverless CLI not installed: needs node and npm (`make test` runs `npm ci` when npm is on PATH)")
    assert sys.version_info[:2] == tuple(map(int, RUNTIME_VERSION.split("."))), f"tests need {RUNTIME}"
    scratch = tmp_path_factory.mktemp("artifact")
    project = _copy_project(scratch / "project")
    env = cli_env(scratch)
    env["DATABASE_URL"] = f"postgresql+psycopg://app:{LEAK_MARKER}@db.example.com:5432/users"
    result = subprocess.run(
        [str(OSLS), "package"],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS * 3,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    serverless_dir = project / ".serverless"
    zip_path = serverless_dir / "users-api.zip"
    tree = scratch / "var-task"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(tree)
    _make_read_only(tree)
    return Artifact(zip_path, serverless_dir, result.stdout + result.stderr, tree)


@pytest.fixture
def zip_names(artifact: Artifact) -> set[str]:
    with zipfile.ZipFile(artifact.zip_path) as archive:
        return set(archive.namelist())


def run_probe(tree: Path, tmp_path: Path) -> ProbeResult:
    """Import the handler from `tree` as Lambda would and serve the HTTP API sample event."""
    completed = subprocess.run(
        [str(RUNTIME_PYTHON), "-S", "-c", IMPORT_PROBE, str(SAMPLE_EVENTS_DIR / "http-api-v2.json")],
        cwd=tree,
        env={
            "PATH": "/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "LAMBDA_TASK_ROOT": str(tree),
            "SQLITE_COPY_PATH": str(tmp_path / "lambda-tmp" / "users.db"),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return ProbeResult(**json.loads(completed.stdout.splitlines()[-1]))


@pytest.fixture
def writable_copy(artifact: Artifact, tmp_path: Path) -> Path:
    copy = tmp_path / "var-task"
    shutil.copytree(artifact.tree, copy)
    for path in [copy, *copy.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return copy


def _without_bytecode(tree: Path) -> None:
    for cache in list(tree.rglob("__pycache__")):
        shutil.rmtree(cache)


@needs_cli
def test_artifact_ships_handler_app_database_and_dependencies(zip_names: set[str]) -> None:
    sources = {name for name in zip_names if not is_bytecode(name)}

    ours = {name for name in sources if name.split("/")[0] in {"handler.py", "app", "data"}}
    app_sources = {path.relative_to(ROOT).as_posix() for path in (ROOT / "app").rglob("*.py")}
    assert ours == {"handler.py", "data/users.db", "app/web/openapi.json"} | app_sources
    for dependency in ("flask/__init__.py", "sqlalchemy/__init__.py", "werkzeug/__init__.py", "serverless_wsgi.py"):
        assert dependency in sources
    compiled_extensions = [name for name in sources if name.endswith(".so")]
    assert compiled_extensions, "expected the dependencies' C extensions (markupsafe, sqlalchemy)"
    assert all(re.search(r"\.cpython-\d+-x86_64-linux-gnu\.so$|\.abi3\.so$", name) for name in compiled_extensions)


@needs_cli
def test_artifact_holds_no_build_junk(zip_names: set[str]) -> None:
    junk = sorted(name for name in zip_names if JUNK.search(name))
    project_files = {"README.md", "Makefile", "package.json", "pyproject.toml", "serverless.yml", ".python-version"}
    dev_trees = ("tests/", "events/", ".venv/", "node_modules/", "scripts/", ".git/", "bench/", "serverless-plugins/")

    assert junk == []
    assert not project_files & zip_names
    assert not [name for name in zip_names if name.startswith(dev_trees)]


@needs_cli
def test_artifact_ships_runtime_bytecode_for_every_source(zip_names: set[str]) -> None:
    sources = {name for name in zip_names if name.endswith(".py")}
    bytecode = {name for name in zip_names if is_bytecode(name)}

    expected = {importlib.util.cache_from_source(name, optimization="") for name in sources}
    assert all(name.endswith(PYC_SUFFIX) for name in expected)
    assert bytecode == expected


@needs_cli
def test_artifact_bytecode_is_unchecked_hash_of_the_shipped_source(artifact: Artifact) -> None:
    with zipfile.ZipFile(artifact.zip_path) as archive:
        for name in archive.namelist():
            if not name.endswith(".py"):
                continue
            pyc = archive.read(importlib.util.cache_from_source(name, optimization=""))
            source = archive.read(name)

            assert pyc[:4] == importlib.util.MAGIC_NUMBER, name
            assert int.from_bytes(pyc[4:8], "little") == UNCHECKED_HASH_FLAGS, name
            assert pyc[8:16] == importlib.util.source_hash(source), name


@needs_cli
def test_artifact_imports_and_serves_from_its_bytecode_alone(artifact: Artifact, tmp_path: Path) -> None:
    before = _snapshot(artifact.tree)

    result = run_probe(artifact.tree, tmp_path)

    assert (result.response["statusCode"], result.response["body"]) == (200, SEED_NAMES)
    assert result.compiled == []
    assert result.no_bytecode == []
    # Only the zip's contents and the standard library: no venv, no checkout.
    assert result.sys_path[0] == ""
    assert all(entry.startswith(sys.base_prefix) for entry in result.sys_path[1:])
    outside = {
        name: path
        for name, path in result.files.items()
        if not path.startswith((result.task_root + os.sep, result.stdlib + os.sep))
    }
    assert outside == {}
    assert {"handler", "app", "flask", "sqlalchemy"} <= {
        name for name, path in result.files.items() if path.startswith(result.task_root + os.sep)
    }
    assert _snapshot(artifact.tree) == before


@needs_cli
def test_import_probe_detects_an_artifact_without_bytecode(writable_copy: Path, tmp_path: Path) -> None:
    # The artifact before #12: sources only, as serverless-python-requirements' slim leaves them.
    _without_bytecode(writable_copy)

    result = run_probe(writable_copy, tmp_path)

    assert result.response["statusCode"] == 200
    compiled = {Path(path).relative_to(writable_copy).as_posix() for path in result.compiled}
    assert {"handler.py", "app/__init__.py", "flask/app.py", "sqlalchemy/engine/base.py"} <= compiled
    assert {"handler", "app", "flask.app"} <= set(result.no_bytecode)


@needs_cli
def test_import_probe_detects_timestamp_bytecode_after_the_zip_normalised_file_times(
    writable_copy: Path, tmp_path: Path
) -> None:
    # Python's default .pyc records the source's mtime; the zip gives every source the same
    # fixed time, so bytecode compiled before zipping no longer matches and is recompiled.
    _without_bytecode(writable_copy)
    assert compileall.compile_dir(writable_copy, quiet=1, optimize=0)  # timestamp mode
    epoch = 315532800  # 1980-01-01T00:00:00Z, the zip format's first time
    for source in writable_copy.rglob("*.py"):
        os.utime(source, (epoch, epoch))

    result = run_probe(writable_copy, tmp_path)

    assert result.response["statusCode"] == 200
    assert "handler.py" in {Path(path).relative_to(writable_copy).as_posix() for path in result.compiled}


@needs_cli
def test_package_keeps_the_shells_database_url_out_of_the_deployment(artifact: Artifact) -> None:
    leaks = []
    for path in artifact.serverless_dir.rglob("*"):
        if path.is_file() and LEAK_MARKER.encode() in path.read_bytes():
            leaks.append(str(path.relative_to(artifact.serverless_dir)))
    for path in artifact.tree.rglob("*"):
        if path.is_file() and LEAK_MARKER.encode() in path.read_bytes():
            leaks.append(f"users-api.zip:{path.relative_to(artifact.tree)}")
    template = json.loads((artifact.serverless_dir / "cloudformation-template-update-stack.json").read_text())
    environment = template["Resources"]["ApiLambdaFunction"]["Properties"]["Environment"]["Variables"]

    assert leaks == []
    assert "DATABASE_URL" not in environment
    assert (environment["DATABASE_SECRET_ARN"], environment["DATABASE_URL_SSM_PARAMETER"]) == ("", "")
    assert "DATABASE_URL from the shell is not deployed" in artifact.output


def test_pip_targets_the_runtimes_python_and_platform() -> None:
    requirements = SERVERLESS_CONFIG["custom"]["pythonRequirements"]
    pip_arguments = " ".join(requirements["pipCmdExtraArgs"])

    assert (ROOT / ".python-version").read_text(encoding="utf-8").strip() == RUNTIME_VERSION
    assert f"--python-version {RUNTIME_VERSION}" in pip_arguments
    assert "--implementation cp" in pip_arguments
    assert "--only-binary=:all:" in pip_arguments
    assert re.search(r"--platform manylinux\S*_\$\{self:custom\.wheelArchitecture\}", pip_arguments)
    assert (requirements["useStaticCache"], requirements["useDownloadCache"]) == (False, False)


@pytest.fixture(scope="module")
def stage_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if shutil.which("node") is None or not OSLS.exists():
        pytest.skip("Serverless CLI not installed: needs node and npm (`make test` runs `npm ci` when npm is on PATH)")
    scratch = tmp_path_factory.mktemp("print")
    secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:users-api/prod/db-AbCdEf"
    result = subprocess.run(
        [str(OSLS), "print", "--stage", "prod", "--format", "json", "--param", f"databaseSecretArn={secret_arn}"],
        cwd=ROOT,
        env=cli_env(scratch),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    yield json.loads(result.stdout[result.stdout.index("{") :])


@needs_cli
def test_deploy_settings_name_the_secret_per_stage(stage_config: dict[str, Any]) -> None:
    environment = stage_config["provider"]["environment"]

    assert environment["DATABASE_SECRET_ARN"] == (
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:users-api/prod/db-AbCdEf"
    )
    assert environment["DATABASE_URL_SSM_PARAMETER"] == ""
    assert stage_config["custom"]["wheelArchitecture"] == "x86_64"


@needs_cli
def test_artifact_cold_start_bench_runs_every_variant(artifact: Artifact) -> None:
    # Timings belong to `make bench-artifact`; this checks the benchmark still runs and reports.
    completed = subprocess.run(
        [sys.executable, "-m", "bench.artifact_cold", "--artifact", str(artifact.zip_path), "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    rows = [line.split(" | ")[0].lstrip("| ") for line in completed.stdout.splitlines() if line.startswith("| ")]
    assert rows[2:] == ["as shipped", "fully precompiled", "no bytecode (the zip before #12)", rows[-1]]
    assert rows[-1].startswith("reference: bare `python -S`")
    assert "as shipped / fully precompiled, per round" in completed.stdout


@needs_cli
def test_package_routes_every_method_of_users_to_the_function_on_rest(artifact: Artifact) -> None:
    # A REST API resource answers methods it lacks itself (403), so HEAD and CORS preflights
    # reach the app only through ANY (docs/http.md).
    template = json.loads((artifact.serverless_dir / "cloudformation-template-update-stack.json").read_text())
    resources = template["Resources"]
    users = [
        name
        for name, resource in resources.items()
        if resource["Type"] == "AWS::ApiGateway::Resource" and resource["Properties"]["PathPart"] == "users"
    ]
    methods = {
        resource["Properties"]["HttpMethod"]
        for resource in resources.values()
        if resource["Type"] == "AWS::ApiGateway::Method" and resource["Properties"]["ResourceId"] == {"Ref": users[0]}
    }

    assert len(users) == 1
    assert methods == {"ANY"}
