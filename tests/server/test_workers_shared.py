"""What two real worker processes of `wakedock serve` must share beyond the wake (issue #14):
a sign-in ticket is spent on every worker at once, a secret change is audited once, a TOTP
code used on one worker is refused on the other, and /metrics counts every worker's requests.

Each test holds one kept-alive connection on each worker (support/workers.py reads which
process holds it from /proc), so "the other worker" is certain, not left to the kernel.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import jwt
import pyotp
import pytest

from conftest import strong_password
from support.components import RedisServer
from support.engine import AddApp, add_app, engine, installation, network, python_image, wait_for  # noqa: F401
from support.server import WakeDockProcess, run_cli, wakedock_server
from support.workers import WORKERS_START, connection_per_worker, wait_workers

Conns = dict[int, http.client.HTTPConnection]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def env(redis_server: RedisServer) -> Iterator[dict[str, str]]:
    yield {
        "WAKEDOCK_SERVER__WORKERS": "2",
        "WAKEDOCK_SERVER__KEEP_ALIVE_TIMEOUT_SECONDS": "120",
        "WAKEDOCK_RATE_LIMIT__STORAGE_URL": redis_server.url,
    }
    redis_server.flush()


def create_user(data: Path, env: dict[str, str], name: str, role: str) -> str:
    password = strong_password()
    created = run_cli(
        data, "user", "create", name, "--role", role, "--password-stdin",
        stdin=password + "\n", env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    return password


def call(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: object = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPMessage, str]:
    sent = {**(headers or {})}
    payload = None
    if body is not None:
        payload = json.dumps(body)
        sent["Content-Type"] = "application/json"
    conn.request(method, path, payload, sent)
    reply = conn.getresponse()
    text = reply.read().decode()
    return reply.status, reply.headers, text


def events(data: Path, type_: str) -> list[tuple[str, str | None, dict[str, object]]]:
    with sqlite3.connect(data / "wakedock.db") as db:
        rows = db.execute(
            "SELECT outcome, target, details FROM audit_events WHERE type = ? ORDER BY seq",
            (type_,),
        ).fetchall()
    return [(r[0], r[1], json.loads(r[2] or "{}")) for r in rows]


def two_workers(server: WakeDockProcess) -> tuple[list[int], Conns]:
    workers = wait_workers(server, 2)
    return workers, connection_per_worker(server, workers)


# -- sign-in tickets -------------------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.security
def test_a_replayed_sign_in_ticket_is_refused_on_every_worker_and_audited(
    data: Path,
    env: dict[str, str],
    add_app: AddApp,  # noqa: F811 - the fixture imported above
    installation: str,  # noqa: F811
) -> None:
    env = {**env, "WAKEDOCK_DOCKER__INSTALLATION": installation}
    add_app(data, env, "vault", access={"policy": "authenticated"}, idle_timeout_s=600)
    password = create_user(data, env, "carol", "viewer")
    with wakedock_server(data, env=env, ready_timeout=WORKERS_START) as server:
        workers, conns = two_workers(server)
        first, other = (conns[pid] for pid in workers)
        signed_in = call(
            first,
            "POST",
            "/api/v1/auth/login",
            {"username": "carol", "password": password, "mode": "cookie"},
            {"Origin": server.base_url},
        )
        assert signed_in[0] == 200, signed_in
        session = "; ".join(c.split(";")[0] for c in signed_in[1].get_all("set-cookie") or [])
        query = urlencode({"next": "https://vault.localhost/"})
        handoff = call(first, "GET", f"/auth/proxy?{query}", headers={"Cookie": session})
        assert handoff[0] == 303, handoff
        ticket_path = handoff[1]["location"].removeprefix("https://vault.localhost")
        assert urlsplit(ticket_path).path == "/_wakedock/auth"
        service = {"Host": "vault.localhost"}

        redeemed = call(first, "GET", ticket_path, headers=service)
        assert redeemed[0] == 303 and "__Host-wakedock_proxy=" in redeemed[1]["set-cookie"]
        # The captured ticket URL replayed: on the other worker for certain, then on new
        # connections (the kernel hands them to either worker).
        replies = [call(other, "GET", ticket_path, headers=service)]
        for _ in range(10):
            fresh = connection_per_worker(server, workers)
            replies += [call(conn, "GET", ticket_path, headers=service) for conn in fresh.values()]
            for conn in fresh.values():
                conn.close()
        assert [status for status, _, _ in replies] == [401] * len(replies)
        assert all("set-cookie" not in headers for _, headers, _ in replies)
        assert all("already used" in body for _, _, body in replies)
    reuses = events(data, "token_reuse")
    assert len(reuses) == len(replies)
    assert {(outcome, target) for outcome, target, _ in reuses} == {("denied", "vault.localhost")}
    assert {d["kind"] for _, _, d in reuses} == {"proxy_ticket"}


# -- the secret watcher ----------------------------------------------------------------------
def test_a_new_signing_key_is_audited_once_while_every_worker_follows_it(
    data: Path, env: dict[str, str]
) -> None:
    env = {**env, "WAKEDOCK_SECRETS__REFRESH_SECONDS": "0.5"}
    password = create_user(data, env, "dave", "viewer")
    with wakedock_server(data, env=env, ready_timeout=WORKERS_START) as server:
        workers, conns = two_workers(server)
        rotated = run_cli(data, "secrets", "rotate", "jwt", env=env)
        assert rotated.returncode == 0, rotated.stderr
        [new_kid] = re.findall(r"new kid ([^)\s]+)", rotated.stdout)

        def kid_on(pid: int) -> str:
            status, _, body = call(
                conns[pid], "POST", "/api/v1/auth/login", {"username": "dave", "password": password}
            )
            assert status == 200, body
            return str(jwt.get_unverified_header(json.loads(body)["access_token"])["kid"])

        # Published after 5.5 s; then each worker signs with it from its next refresh on.
        for pid in workers:
            wait_for(lambda pid=pid: kid_on(pid) == new_kid, f"worker {pid} signing", 60)
        time.sleep(2)  # four more refreshes of each worker: a second audit would be there
    noticed = [
        (d["action"], d["version"])
        for _, target, d in events(data, "secret_rotation")
        if target == "auth.jwt_signing_key"
    ]
    assert noticed == [("rotated", 2), ("accepted", 2), ("signing", 2)]


# -- TOTP codes ------------------------------------------------------------------------------
@pytest.mark.security
def test_a_totp_code_used_on_one_worker_is_refused_on_the_other(
    data: Path, env: dict[str, str]
) -> None:
    password = create_user(data, env, "erin", "viewer")
    with wakedock_server(data, env=env, ready_timeout=WORKERS_START) as server:
        workers, conns = two_workers(server)
        first, other = (conns[pid] for pid in workers)
        login = {"username": "erin", "password": password}
        status, _, body = call(first, "POST", "/api/v1/auth/login", login)
        assert status == 200, body
        bearer = {"Authorization": f"Bearer {json.loads(body)['access_token']}"}
        status, _, body = call(first, "POST", "/api/v1/auth/mfa/setup", headers=bearer)
        assert status == 200, body
        totp = pyotp.TOTP(json.loads(body)["secret"])
        status, _, body = call(
            first, "POST", "/api/v1/auth/mfa/confirm", {"code": totp.now()}, bearer
        )
        assert status == 200, body

        # Two sign-ins waiting for their code, one on each worker; the next step's code (this
        # one was spent by the confirmation) is seen by an attacker and used on both.
        challenges = []
        for conn in (first, other):
            status, _, body = call(conn, "POST", "/api/v1/auth/login", login)
            assert status == 200 and json.loads(body)["requires_mfa"] is True, body
            challenges.append(json.loads(body)["challenge_token"])
        code = totp.at(time.time() + 30)
        verify = "/api/v1/auth/mfa/verify"
        status, _, body = call(
            first, "POST", verify, {"challenge_token": challenges[0], "code": code}
        )
        assert status == 200 and "access_token" in body, body
        status, _, body = call(
            other, "POST", verify, {"challenge_token": challenges[1], "code": code}
        )
        assert status in (400, 401) and "access_token" not in body, body
    failures = events(data, "mfa_failure")
    assert len(failures) == 1 and failures[0][0] == "failure"


# -- /metrics --------------------------------------------------------------------------------
def requests_on(text: str, target: str) -> float:
    series = f'wakedock_http_requests_total{{target="{target}"}}'
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert match, f"{series} missing from:\n{text}"
    return float(match.group(1))


def test_metrics_count_the_requests_of_every_worker_whichever_answers(
    data: Path, env: dict[str, str]
) -> None:
    password = create_user(data, env, "olga", "operator")
    with wakedock_server(data, env=env, ready_timeout=WORKERS_START) as server:
        workers, conns = two_workers(server)
        status, _, body = call(
            conns[workers[0]],
            "POST",
            "/api/v1/auth/login",
            {"username": "olga", "password": password},
        )
        assert status == 200, body
        bearer = {"Authorization": f"Bearer {json.loads(body)['access_token']}"}
        # A name no service has, unknown to both workers: 7 requests on one, 5 on the other.
        for pid, count in zip(workers, (7, 5), strict=True):
            for _ in range(count):
                status, _, _ = call(conns[pid], "GET", "/", headers={"Host": "nothing.localhost"})
                assert status == 404
        for pid in workers:
            status, _, text = call(conns[pid], "GET", "/metrics", headers=bearer)
            assert status == 200, text
            assert requests_on(text, "unknown") == 12, f"worker {pid}"
            assert requests_on(text, "service") == 0
        # A worker that dies keeps its counts in the totals: a counter never goes back.
        conns[workers[1]].close()
        victim = workers[1]
        os.kill(victim, signal.SIGKILL)
        survivor = conns[workers[0]]
        status, _, text = call(survivor, "GET", "/metrics", headers=bearer)
        assert status == 200 and requests_on(text, "unknown") == 12, text


# -- session revocation ----------------------------------------------------------------------
@pytest.mark.security
def test_a_session_signed_out_on_one_worker_is_refused_at_once_on_the_other(
    data: Path, env: dict[str, str]
) -> None:
    # The longest cache allowed: without the shared epoch the other worker would accept the
    # ended session for up to 10 s from its cache.
    env = {**env, "WAKEDOCK_AUTH__SESSION_CACHE_SECONDS": "10"}
    password = create_user(data, env, "frank", "viewer")
    with wakedock_server(data, env=env, ready_timeout=WORKERS_START) as server:
        workers, conns = two_workers(server)
        first, other = (conns[pid] for pid in workers)
        status, _, body = call(
            first, "POST", "/api/v1/auth/login", {"username": "frank", "password": password}
        )
        assert status == 200, body
        bearer = {"Authorization": f"Bearer {json.loads(body)['access_token']}"}
        assert call(other, "GET", "/api/v1/auth/me", headers=bearer)[0] == 200  # now cached
        assert call(first, "GET", "/api/v1/auth/me", headers=bearer)[0] == 200
        assert call(first, "POST", "/api/v1/auth/logout", headers=bearer)[0] == 204
        assert call(other, "GET", "/api/v1/auth/me", headers=bearer)[0] == 401
        assert call(first, "GET", "/api/v1/auth/me", headers=bearer)[0] == 401
