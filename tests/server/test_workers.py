"""Several workers are refused where they would weaken the attempt budgets."""

from __future__ import annotations

import http.client
import json
import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from conftest import strong_password
from support.components import RedisServer
from support.server import free_port, run_cli, wakedock_server
from support.workers import WORKERS_START, connection_per_worker, wait_workers
from wakedock.config.sections import ServerSettings


def test_several_workers_on_an_in_memory_rate_limit_store_refuse_to_start(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    started = run_cli(
        data,
        "serve",
        "--port",
        str(free_port()),
        env={"WAKEDOCK_SERVER__WORKERS": "2"},
    )
    assert started.returncode != 0
    message = " ".join(started.stderr.split())
    assert "rate-limit store is in memory" in message
    assert "rate_limit.storage_url" in message and "server.workers: 1" in message


def test_workers_setting_takes_a_number_or_one_per_cpu() -> None:
    assert ServerSettings().worker_count() == 1
    assert ServerSettings(workers=3).worker_count() == 3
    assert ServerSettings(workers="auto").worker_count() == len(os.sched_getaffinity(0))
    for wrong in (0, -1, "many"):
        with pytest.raises(ValidationError):
            ServerSettings(workers=wrong)


def test_every_worker_takes_the_printed_setup_token(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    env = {"WAKEDOCK_SERVER__WORKERS": "2", "WAKEDOCK_RATE_LIMIT__STORAGE_URL": redis_server.url}
    with wakedock_server(tmp_path / "data", env=env, ready_timeout=WORKERS_START) as server:
        workers = wait_workers(server, 2)
        [token] = re.findall(r"setup token[^\n]*\n\s*([A-Za-z0-9_-]{32,})\s*$", server.log(), re.M)
        conns = connection_per_worker(server, workers)
        for conn in conns.values():
            # A too weak password with the right token: refused for the password, so the
            # worker knows the token (without it: 403, and the token stays usable).
            answer = _post(conn, {"token": token, "username": "first", "password": "short"})
            assert answer[0] in (400, 422), answer
        created = _post(
            conns[workers[1]], {"token": token, "username": "first", "password": strong_password()}
        )
        assert created[0] == 201, created
        again = {"token": token, "username": "second", "password": strong_password()}
        assert _post(conns[workers[0]], again)[0] == 403
    redis_server.flush()


def _post(conn: http.client.HTTPConnection, body: dict[str, str]) -> tuple[int, str]:
    conn.request(
        "POST", "/api/v1/auth/setup", json.dumps(body), {"Content-Type": "application/json"}
    )
    reply = conn.getresponse()
    return reply.status, reply.read().decode()
