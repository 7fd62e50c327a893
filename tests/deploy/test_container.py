"""The container deployment, checked without a Docker engine: Dockerfile, compose file, docs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

from pushtrio.config import ENVIRONMENT_VARIABLES
from tests.web.conftest import openapi_document

ROOT = Path(__file__).resolve().parents[2]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    pairs = []
    for line in logical:
        instruction, _, arguments = line.partition(" ")
        pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def final_stage(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (instruction, _) in enumerate(pairs) if instruction == "FROM"]
    return pairs[starts[-1] :]


def test_dockerfile_slim_python_non_root_and_healthcheck() -> None:
    pairs = dockerfile_instructions()
    images = [args.split()[0] for instruction, args in pairs if instruction == "FROM"]
    assert images
    assert all(image == "python:3.11-slim" for image in images)

    stage = final_stage(pairs)
    users = [args for instruction, args in stage if instruction == "USER"]
    assert users, "the service must not run as root"
    assert users[-1] not in ("root", "0"), "the service must not run as root"
    env = " ".join(args for instruction, args in stage if instruction == "ENV")
    assert re.search(r"\bHOST=0\.0\.0\.0\b", env)
    assert re.search(r"\bPORT=8080\b", env)
    assert ("EXPOSE", "8080") in stage

    healthchecks = [args for instruction, args in stage if instruction == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    check = healthchecks[0]
    assert "CMD" in check
    assert "urllib.request" in check
    assert "/health" in check
    assert re.search(r'"python", "-c"', check)

    entrypoint = next(args for instruction, args in stage if instruction == "ENTRYPOINT")
    command = next(args for instruction, args in stage if instruction == "CMD")
    assert yaml.safe_load(entrypoint) + yaml.safe_load(command) == ["pushtrio", "serve"]


def test_dockerfile_copies_only_what_exists_and_dockerignore_keeps_it() -> None:
    sources = []
    for instruction, args in dockerfile_instructions():
        if instruction == "COPY" and "--from" not in args:
            sources += shlex.split(args)[:-1]
    assert "src" in sources
    assert "pyproject.toml" in sources
    # README.md is the package's readme (pyproject) and is written with the docs.
    missing = [s for s in sources if not (ROOT / s).exists() and s != "README.md"]
    assert missing == []
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".services", "tests"} <= ignored
    assert not ignored & {"src", "pyproject.toml", "README.md"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def published(service: dict[str, Any]) -> list[str]:
    return [str(port) for port in service.get("ports", [])]


def test_compose_runs_the_whole_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "redis", "pushtrio", "kafka-ui", "redis-commander"} <= set(services)

    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    kafka_env = kafka["environment"]
    assert set(kafka_env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "zookeeper" not in yaml.safe_dump(compose).lower()
    assert "PLAINTEXT://kafka:9092" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    assert str(kafka_env["KAFKA_CONTROLLER_QUORUM_VOTERS"]).startswith(
        f"{kafka_env['KAFKA_NODE_ID']}@"
    )
    assert "healthcheck" in kafka

    assert services["redis"]["image"].startswith("redis:")

    ui = services["kafka-ui"]
    assert "9080:8080" in published(ui)
    assert ui["environment"]["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == "kafka:9092"
    commander = services["redis-commander"]
    assert "8081:8081" in published(commander)
    assert "redis:6379" in commander["environment"]["REDIS_HOSTS"]

    host_ports: list[str] = []
    for service in services.values():
        host_ports += [port.rsplit(":", 1)[0] for port in published(service)]
    assert len(host_ports) == len(set(host_ports)), "two services publish one host port"


def test_compose_runs_two_replicas_in_one_group(compose: dict[str, Any]) -> None:
    service = compose["services"]["pushtrio"]
    assert service["build"] == "."
    assert service["deploy"]["replicas"] == 2
    env = {name: str(value) for name, value in service["environment"].items()}
    assert env["KAFKA_BROKERS"] == "kafka:9092"
    assert env["REDIS_ADDR"] == "redis:6379"
    assert env["HOST"] == "0.0.0.0"
    assert env["CONSUMER_GROUP"]  # one value for both replicas: one group
    assert set(env) <= set(ENVIRONMENT_VARIABLES), set(env) - set(ENVIRONMENT_VARIABLES)
    # Two replicas cannot share one host port: a range with a port for each.
    (ports,) = published(service)
    low, high = (int(p) for p in ports.split(":")[0].split("-"))
    assert high - low + 1 >= service["deploy"]["replicas"]
    assert ports.endswith(":" + env["PORT"])
    assert set(service["depends_on"]) >= {"redis"}
    assert {"kafka", "kafka-setup"} & set(service["depends_on"])
    # SIGTERM drains for up to SHUTDOWN_TIMEOUT: docker must wait at least that long.
    assert int(service["stop_grace_period"].rstrip("s")) > int(env["SHUTDOWN_TIMEOUT"].rstrip("s"))


def readme() -> str:
    path = ROOT / "README.md"
    if not path.exists():
        pytest.skip("README.md is not written yet")
    return path.read_text()


def test_readme_documents_every_environment_variable() -> None:
    text = readme()
    missing = [name for name in ENVIRONMENT_VARIABLES if not re.search(rf"\b{name}\b", text)]
    assert missing == []


def test_readme_documents_every_endpoint_and_the_stack() -> None:
    text = readme()
    # A path parameter stands for any one segment: /users/{user_id}/devices is
    # documented by /users/alice/devices (and /ratelimit/{user_id} by /ratelimit/).
    paths = [path for path in openapi_document()["paths"] if path != "/"]
    patterns = {
        path: "".join(
            "([^\\s/]+)?" if part.startswith("{") else re.escape(part)
            for part in re.split(r"({[^}]+})", path)
        )
        for path in paths
    }
    missing = [path for path, pattern in patterns.items() if not re.search(pattern, text)]
    assert missing == []
    for needle in ("pushtrio watch", "docker compose", "9080", "8081"):
        assert needle in text, needle
