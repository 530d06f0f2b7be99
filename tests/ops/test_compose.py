"""compose.yaml, Dockerfile and .dockerignore: the properties the deployment relies on.

No Docker engine is needed: the files are parsed. ``docker compose config -q`` runs too when the
compose plugin is installed.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymongo.uri_parser import parse_uri

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def mongo(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]["mongo"]


@pytest.fixture(scope="module")
def api(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]["api"]


def as_args(value: str | list[str]) -> list[str]:
    """A compose ``command`` in either form, as a list of arguments."""
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's ``environment`` in either form (mapping or ``KEY=value`` list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def healthcheck_command(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return test
    assert test[0] in {"CMD", "CMD-SHELL"}, test
    return " ".join(test[1:])


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    result = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        result.append((instruction.upper(), args.strip()))
    return result


def instructions(name: str) -> list[str]:
    return [args for instruction, args in dockerfile_instructions() if instruction == name]


# --- compose.yaml: mongo ------------------------------------------------------------------------


def test_compose_declares_mongo_and_api(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) >= {"mongo", "api"}


def test_mongo_uses_the_official_image(mongo: dict[str, Any]) -> None:
    image = mongo["image"]
    assert image.startswith("mongo:"), image  # the Docker official image, no registry or owner
    assert image.split(":", 1)[1].split(".")[0] in {"7", "8"}


def test_mongo_runs_a_replica_set_reachable_from_other_containers(mongo: dict[str, Any]) -> None:
    args = as_args(mongo["command"])
    assert "--replSet" in args
    assert args[args.index("--replSet") + 1] == "rs0"
    assert "--bind_ip_all" in args


def test_mongo_healthcheck_initiates_the_replica_set(mongo: dict[str, Any]) -> None:
    command = healthcheck_command(mongo)
    assert "mongosh" in command
    assert "rs.initiate(" in command
    assert "_id: 'rs0'" in command or '_id: "rs0"' in command
    assert "mongo:27017" in command  # the member's address as the api container resolves it
    # healthy only once this node is primary (mongosh exits 0 whatever the last value is)
    assert "isWritablePrimary" in command
    assert "quit(1)" in command or "exit(1)" in command


def test_mongo_healthcheck_has_timing(mongo: dict[str, Any]) -> None:
    check = mongo["healthcheck"]
    assert {"interval", "timeout", "retries", "start_period"} <= set(check)
    assert int(check["retries"]) >= 3


def test_mongo_data_lives_on_a_named_volume(compose: dict[str, Any], mongo: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    mounts = []
    for volume in mongo["volumes"]:
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source"), volume["target"]
        mounts.append((source, target))
    sources = [source for source, target in mounts if target == "/data/db"]
    assert len(sources) == 1, mounts
    assert sources[0] in declared  # a named volume, not a bind mount or an anonymous volume


# --- compose.yaml: api --------------------------------------------------------------------------


def test_api_builds_from_the_dockerfile(api: dict[str, Any]) -> None:
    build = api["build"]
    if isinstance(build, str):
        context, dockerfile = build, "Dockerfile"
    else:
        context, dockerfile = build.get("context", "."), build.get("dockerfile", "Dockerfile")
    assert (COMPOSE.parent / context).resolve() == ROOT
    assert dockerfile == "Dockerfile"
    assert DOCKERFILE.is_file()


def test_api_mongodb_uri_points_at_the_mongo_service(
    compose: dict[str, Any], mongo: dict[str, Any], api: dict[str, Any]
) -> None:
    uri = environment(api)["MEMVAULT_MONGODB_URI"]
    parsed = parse_uri(uri)
    assert parsed["nodelist"] == [("mongo", 27017)]
    assert "mongo" in compose["services"]
    args = as_args(mongo["command"])
    assert parsed["options"]["replicaSet"] == args[args.index("--replSet") + 1]


def interpolated(value: str, **variables: str) -> str:
    """``value`` as compose reads it: ``${NAME:-default}`` is the variable, else the default."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: variables.get(m.group(1), m.group(2)), value)


def test_api_listens_on_all_interfaces_in_its_container(api: dict[str, Any]) -> None:
    assert environment(api)["MEMVAULT_HOST"] == "0.0.0.0"


def test_api_is_published_on_loopback_only_unless_told(api: dict[str, Any]) -> None:
    """Issue 17, item 7: compose published 0.0.0.0:8000 with auth open."""
    (port,) = [str(p) for p in api["ports"]]
    assert interpolated(port) == "127.0.0.1:8000:8000"
    assert interpolated(port, API_ADDRESS="0.0.0.0", API_PORT="80") == "0.0.0.0:80:8000"


def test_api_requires_api_keys(api: dict[str, Any]) -> None:
    """Issue 17, item 7: compose ran the API open to whoever reached the port."""
    assert environment(api)["MEMVAULT_AUTH"] == "required"


def test_compose_and_readme_say_how_to_create_the_first_key() -> None:
    command = "docker compose run --rm api memvault keys create"
    assert command in COMPOSE.read_text()
    assert command in (ROOT / "README.md").read_text()


def test_api_waits_for_a_healthy_mongo(api: dict[str, Any]) -> None:
    assert api["depends_on"]["mongo"]["condition"] == "service_healthy"


def test_api_healthcheck_asks_readyz(api: dict[str, Any]) -> None:
    command = healthcheck_command(api)
    assert command.startswith("python ")  # the slim image has no curl or wget
    assert "http://127.0.0.1:8000/readyz" in command
    assert {"interval", "timeout", "retries"} <= set(api["healthcheck"])


def test_api_healthcheck_script_compiles(api: dict[str, Any]) -> None:
    test = api["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    compile(test[3], "<healthcheck>", "exec")


def test_api_restarts_unless_stopped(api: dict[str, Any]) -> None:
    assert api["restart"] == "unless-stopped"


# --- Dockerfile, .dockerignore ------------------------------------------------------------------


def test_dockerfile_uses_python_311_slim() -> None:
    assert instructions("FROM") == ["python:3.11-slim"]


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = instructions("USER")
    assert users, "no USER instruction: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def pip_installs() -> list[list[str]]:
    """The arguments of each ``pip install`` the RUN instructions make, in order."""
    installs = []
    for run in instructions("RUN"):
        for command in run.split("&&"):
            args = shlex.split(command)
            if args[:2] == ["pip", "install"]:
                installs.append(args[2:])
    return installs


def test_dockerfile_installs_the_project() -> None:
    copied = " ".join(instructions("COPY"))
    for needed in ("requirements.lock", "pyproject.toml", "README.md", "app/"):
        assert needed in copied
    assert pip_installs()[-1][-1] == "."


def test_dockerfile_installs_the_locked_dependencies_then_memvault_alone() -> None:
    locked, project = pip_installs()
    # the lock and flags only: no requirement beside the lock's pins
    assert [arg for arg in locked if not arg.startswith("--")] == ["-r", "requirements.lock"]
    assert project[-1] == "."
    assert "--no-deps" in project  # everything it needs came from the lock
    assert "--no-build-isolation" in project  # built by the locked setuptools, not the newest


def test_dockerfile_runs_memvault_serve() -> None:
    cmd = json.loads(instructions("CMD")[-1])  # exec form: signals reach memvault directly
    assert cmd[:2] == ["memvault", "serve"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert cmd[cmd.index("--port") + 1] == "8000"
    assert instructions("EXPOSE") == ["8000"]


def test_dockerfile_sets_the_data_dir() -> None:
    env = " ".join(instructions("ENV"))
    assert "MEMVAULT_DATA_DIR=/data" in env


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".memvault", "tests"} <= patterns
    assert any("__pycache__" in p for p in patterns)
    assert not patterns & {"app", "app/", "pyproject.toml", "README.md", "requirements.lock"}


# --- docker compose itself ----------------------------------------------------------------------


def _compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def test_docker_compose_config_is_valid() -> None:
    if not _compose_available():
        pytest.skip("the docker compose plugin is not installed")
    done = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
