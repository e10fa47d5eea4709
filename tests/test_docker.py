"""`docker/`: the compose file and the Dockerfile refer to things that exist.

No Docker engine runs where the tests run, so nothing is built: the compose file is parsed and
checked (health checks, pinned images, build contexts, the files the Dockerfile copies, every
`dangjian …` and `prefect …` command it runs, the environment each service needs).
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from api.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
SERVICES = {"postgres", "prefect-server", "worker", "api"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _dockerfile(service: dict[str, Any]) -> Path:
    build = service["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    return context / build.get("dockerfile", "Dockerfile")


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _exec_form(args: str) -> list[str] | None:
    args = args.strip()
    return list(yaml.safe_load(args)) if args.startswith("[") else None


def _argv(service: dict[str, Any]) -> list[list[str]]:
    """Each command line a service runs: entrypoint + command, `sh -c` scripts split up."""
    entrypoint = service.get("entrypoint")
    if entrypoint is None and "build" in service:
        for word, rest in _instructions(_dockerfile(service)):
            if word == "ENTRYPOINT":
                entrypoint = _exec_form(rest)
    command = service.get("command") or []
    entrypoint = [entrypoint] if isinstance(entrypoint, str) else list(entrypoint or [])
    command = shlex.split(command) if isinstance(command, str) else list(command)
    full = entrypoint + command
    if full[:2] == ["sh", "-c"]:
        lines = []
        for part in re.split(r"&&|;|\|\|", " ".join(full[2:])):
            words = shlex.split(part)
            if words and words[0] == "exec":
                words = words[1:]
            if words:
                lines.append(words)
        return lines
    return [full] if full else []


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _expand(value: str) -> str:
    """Compose's `${NAME:-default}`, with the defaults (no .env file)."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m.group(2), value)


# --- structure ------------------------------------------------------------------------------


def test_the_four_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == SERVICES


def test_every_service_has_a_health_check(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        check = svc.get("healthcheck")
        assert check and check.get("test"), f"{name} has no health check"
        assert not check.get("disable"), name
    joined = {name: " ".join(svc["healthcheck"]["test"]) for name, svc in services.items()}
    assert "pg_isready" in joined["postgres"]
    assert "/api/health" in joined["prefect-server"]
    assert "/healthz" in joined["api"]
    assert "/health" in joined["worker"]


def test_depends_on_waits_for_healthy(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: use the long form with a condition"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert spec.get("condition") == "service_healthy", f"{name} → {dep}"
    assert "prefect-server" in services["worker"]["depends_on"]
    assert "postgres" in services["prefect-server"]["depends_on"]
    assert "postgres" in services["api"]["depends_on"]


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    images = [svc["image"] for svc in services.values() if "image" in svc]
    for svc in services.values():
        if "build" in svc:
            images += [
                rest.split()[0] for word, rest in _instructions(_dockerfile(svc)) if word == "FROM"
            ]
    assert images
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{image} is not pinned to a tag"
        assert tag and tag != "latest", f"{image} is not pinned to a tag"


def test_build_contexts_and_copied_files_exist(services: dict[str, dict[str, Any]]) -> None:
    built = [svc for svc in services.values() if "build" in svc]
    assert built, "the app services are built from the repository"
    for svc in built:
        dockerfile = _dockerfile(svc)
        assert dockerfile.is_file(), dockerfile
        context = (COMPOSE.parent / svc["build"]["context"]).resolve()
        assert context == ROOT
        steps = _instructions(dockerfile)
        copies = [rest for word, rest in steps if word in ("COPY", "ADD")]
        assert copies
        for rest in copies:
            parts = _exec_form(rest) or shlex.split(rest)
            parts = [p for p in parts if not p.startswith("--")]
            assert not any(p.startswith("--from") for p in shlex.split(rest))
            for source in parts[:-1]:
                assert (context / source).exists(), f"COPY {source}: not in the repository"
        users = [rest for word, rest in steps if word == "USER"]
        assert users and users[-1] not in ("root", "0"), "the image runs as a non-root user"
        assert any(word == "RUN" and "pip install" in rest for word, rest in steps)
        (entry,) = [rest for word, rest in steps if word == "ENTRYPOINT"]
        assert _exec_form(entry) == ["dangjian"]


def test_mounted_files_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for volume in svc.get("volumes") or []:
            source = str(volume).split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source} is missing"
    init = DOCKER / "postgres-init.sql"
    sql = init.read_text(encoding="utf-8")
    assert "CREATE DATABASE prefect" in sql and "pg_trgm" in sql


# --- commands -------------------------------------------------------------------------------


def test_every_dangjian_command_exists(services: dict[str, dict[str, Any]]) -> None:
    seen = []
    for name, svc in services.items():
        for argv in _argv(svc):
            if argv[0] != "dangjian":
                continue
            seen.append(argv[1:])
            result = CliRunner().invoke(main, [*argv[1:], "--help"])
            assert result.exit_code == 0, f"{name}: `{' '.join(argv)}`: {result.output}"
            assert "Usage" in result.output
    assert ["worker"] in seen
    assert ["db", "upgrade"] in seen
    assert any(args[0] == "serve" and "0.0.0.0" in args for args in seen)


def test_every_prefect_command_exists(services: dict[str, dict[str, Any]]) -> None:
    prefect = Path(sys.executable).parent / "prefect"
    runs = [argv for svc in services.values() for argv in _argv(svc) if argv[0] == "prefect"]
    assert runs, "the prefect-server service runs `prefect server start`"
    for argv in runs:
        done = subprocess.run(
            [str(prefect), *argv[1:], "--help"], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        for option in (a for a in argv[1:] if a.startswith("--")):
            assert option in done.stdout, f"`{' '.join(argv)}`: no option {option}"


# --- environment ----------------------------------------------------------------------------


def test_environment(services: dict[str, dict[str, Any]]) -> None:
    pg = _env(services["postgres"])
    user, password, app_db = (
        _expand(pg["POSTGRES_USER"]),
        _expand(pg["POSTGRES_PASSWORD"]),
        _expand(pg["POSTGRES_DB"]),
    )
    server_cmd = _argv(services["prefect-server"])[0]
    port = server_cmd[server_cmd.index("--port") + 1]

    for name in ("api", "worker"):
        env = _env(services[name])
        url = make_url(_expand(env["DATABASE_URL"]))
        assert url.drivername == "postgresql+psycopg", name
        assert (url.host, url.username, url.password, url.database) == (
            "postgres",
            user,
            password,
            app_db,
        ), name
        assert env.get("PREFECT_SERVER_ANALYTICS_ENABLED", "false") == "false"
    worker = _env(services["worker"])
    assert worker["PREFECT_API_URL"] == f"http://prefect-server:{port}/api"
    assert worker.get("PREFECT_RUNNER_SERVER_ENABLE") == "true"  # for its health check

    server = _env(services["prefect-server"])
    prefect_db = make_url(_expand(server["PREFECT_SERVER_DATABASE_CONNECTION_URL"]))
    assert prefect_db.drivername == "postgresql+asyncpg"
    assert prefect_db.database == "prefect" != app_db  # apart from the application's data
    assert (prefect_db.host, prefect_db.username, prefect_db.password) == (
        "postgres",
        user,
        password,
    )
    assert server["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert "flow_runs" in server["PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED"]
    # The Prefect server's PostgreSQL driver comes with Prefect, so `pip install .` has it.
    requires = importlib.metadata.requires("prefect") or []
    assert any(re.match(r"asyncpg\b", r) for r in requires)


def test_every_variable_has_a_default() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    for match in re.finditer(r"\$\{([^}]*)\}", text):
        assert ":-" in match.group(1), f"${{{match.group(1)}}} needs a default"
