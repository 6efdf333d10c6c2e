"""How an answer of the Docker engine becomes the error a user sees (runtime/client.py).

The real engine's answers (a port conflict, a command it cannot run, no daemon at all) are
covered in tests/integration/test_services_engine.py; the answers the engine gives only when
something on the host is broken are built here, as docker-py raises them."""

from __future__ import annotations

import docker.errors
import pytest
import requests

from wakedock.runtime.client import EngineConflict, EngineFailed, EngineRefused, engine_error
from wakedock.runtime.docker_engine import _ended


def answer(status: int, explanation: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError("engine error", response=response, explanation=explanation)


def test_an_engine_failure_is_a_502_saying_what_the_engine_said() -> None:
    said = "could not find bridge docker0: route ip+net: no such network"
    error = engine_error(answer(500, said))
    assert isinstance(error, EngineFailed)
    assert error.status_code == 502 and error.code == "docker_error"
    assert error.detail == f"the Docker engine failed: {said}"
    assert error.headers() == {}


@pytest.mark.parametrize(
    ("status", "said", "kind", "http"),
    [
        (500, "Bind for 127.0.0.1:8080 failed: port is already allocated", EngineConflict, 409),
        (409, 'Conflict. The container name "/x" is already in use', EngineConflict, 409),
        (400, "invalid reference format", EngineRefused, 422),
    ],
)
def test_conflicts_and_refusals_keep_their_own_status(
    status: int, said: str, kind: type[Exception], http: int
) -> None:
    error = engine_error(answer(status, said))
    assert isinstance(error, kind) and error.status_code == http
    assert said in error.detail


@pytest.mark.security
def test_secrets_in_an_engine_message_are_not_repeated() -> None:
    said = (
        "invalid environment: DB_PASSWORD=hunter2-very-secret, "
        "pulling https://robot:tok3n@registry.example/app failed, "
        "value s3cr3t-from-vault seen"
    )
    error = engine_error(answer(500, said), hidden=["s3cr3t-from-vault", "ab"])
    for secret in ("hunter2-very-secret", "tok3n", "robot", "s3cr3t-from-vault"):
        assert secret not in error.detail
    assert "DB_PASSWORD=***" in error.detail and "//***@registry.example" in error.detail


def test_a_long_engine_message_is_shortened_to_one_line() -> None:
    error = engine_error(answer(500, "line one\nline two " + "x" * 2000))
    assert "\n" not in error.detail
    assert len(error.detail) < 350 and error.detail.endswith("...")


@pytest.mark.security
def test_the_reason_a_run_ended_hides_the_containers_environment() -> None:
    """A status's `exit_error` is read by anyone who may see the service: the engine's text is
    redacted with the container's own environment values (secrets among them)."""
    state = {
        "Running": False,
        "FinishedAt": "2026-11-30T10:00:00Z",
        "ExitCode": 1,
        "Error": "error mounting s3cr3t-from-vault at /data: token=abc123 refused\nmore",
    }
    ended = _ended(state, ["DB_PASSWORD=s3cr3t-from-vault", "PATH=/bin"])
    assert ended["exit_code"] == 1
    assert "s3cr3t-from-vault" not in ended["error"] and "abc123" not in ended["error"]
    assert ended["error"] == "error mounting *** at /data: token=*** refused more"
